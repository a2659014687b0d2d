package dataset

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FuzzLoadCSV fuzzes a CSV file and LoadCSV's label column and header
// flag. LoadCSV must return an error wrapping ErrBadCSV, or a set whose
// examples, written back as CSV, load again to the same set; it must not
// allocate more than a small multiple of the file.
func FuzzLoadCSV(f *testing.F) {
	f.Add([]byte("a,b,label\n0.5, -1,2\n1e-3,3,0\n\n4,5,1\n"), -1, true)
	f.Add([]byte("1,0.25,0.75\n0,1,2\n"), 0, false)
	f.Add([]byte("\"1\",\"2\",\"3\"\r\n-0,1e-45,0\r\n"), 1, false)
	f.Add([]byte("1,2,0\n3,1\n"), -1, false)
	f.Add([]byte("1,2,2147483648\n"), -1, false)
	f.Add([]byte("NaN,Inf,1\n"), -1, false)
	f.Add([]byte("3.4028236e38,1\n"), -1, false)
	f.Add([]byte("1,\"2,0\n"), -1, false)
	f.Add([]byte("a,b\n"), -1, true)
	f.Add([]byte("1\n"), 0, false)
	f.Add([]byte("1,2\n"), 5, false)
	f.Add([]byte{}, -1, false)

	path := filepath.Join(f.TempDir(), "data.csv")
	again := filepath.Join(f.TempDir(), "again.csv")
	f.Fuzz(func(t *testing.T, b []byte, labelCol int, header bool) {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		var s *Set
		var err error
		bound := 64*uint64(len(b)) + 1<<20
		if got := fuzzAllocated(func() { s, err = LoadCSV(path, labelCol, header) }); got > bound {
			t.Fatalf("LoadCSV of %d bytes allocated %d bytes (bound %d)", len(b), got, bound)
		}
		if err != nil {
			if !errors.Is(err, ErrBadCSV) {
				t.Fatalf("error does not wrap ErrBadCSV: %v", err)
			}
			if s != nil {
				t.Fatalf("error %v came with a set", err)
			}
			return
		}
		if s.N < 1 || s.Dim < 1 || s.Classes < 1 {
			t.Fatalf("loaded N=%d Dim=%d Classes=%d", s.N, s.Dim, s.Classes)
		}
		x, labels := csvFuzzExamples(s)
		for i, v := range x {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("feature %d is %v", i, v)
			}
		}
		for i, l := range labels {
			if l < 0 || int(l) >= s.Classes {
				t.Fatalf("label %d is %d, outside [0, %d)", i, l, s.Classes)
			}
		}

		// Written back with the label last and no header, it loads the same.
		var w strings.Builder
		for i := range s.N {
			for _, v := range x[i*s.Dim : (i+1)*s.Dim] {
				w.WriteString(strconv.FormatFloat(float64(v), 'g', -1, 32) + ",")
			}
			w.WriteString(strconv.Itoa(int(labels[i])) + "\n")
		}
		if err := os.WriteFile(again, []byte(w.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		s2, err := LoadCSV(again, -1, false)
		if err != nil {
			t.Fatalf("the loaded set, written back, does not load: %v", err)
		}
		if s2.N != s.N || s2.Dim != s.Dim || s2.Classes != s.Classes {
			t.Fatalf("round trip: N=%d Dim=%d Classes=%d, want %d %d %d", s2.N, s2.Dim, s2.Classes, s.N, s.Dim, s.Classes)
		}
		x2, labels2 := csvFuzzExamples(s2)
		if !slices.Equal(labels2, labels) || !slices.EqualFunc(x2, x, func(a, b float32) bool {
			return math.Float32bits(a) == math.Float32bits(b)
		}) {
			t.Fatalf("round trip changed the examples")
		}
	})
}

// csvFuzzExamples returns all of s's features and labels through Gather.
func csvFuzzExamples(s *Set) (x []float32, labels []int32) {
	idx := make([]int, s.N)
	for i := range idx {
		idx[i] = i
	}
	x, labels = make([]float32, s.N*s.Dim), make([]int32, s.N)
	s.Gather(idx, x, labels)
	return x, labels
}
