package dataset

import (
	"bytes"
	"math"
	"slices"
	"testing"
)

func testSet() *Set {
	return &Set{
		X:       []float32{0, 1, 10, 11, 20, 21, 30, 31},
		Labels:  []int32{0, 1, 2, 0},
		N:       4,
		Dim:     2,
		Classes: 3,
	}
}

func TestGather(t *testing.T) {
	s := testSet()
	x := make([]float32, 3*2)
	labels := make([]int32, 3)
	idx := []int{3, 0, 2}
	s.Gather(idx, x, labels)
	if !slices.Equal(x, []float32{30, 31, 0, 1, 20, 21}) || !slices.Equal(labels, []int32{0, 0, 2}) {
		t.Fatalf("x = %v, labels = %v", x, labels)
	}
	if allocs := testing.AllocsPerRun(100, func() { s.Gather(idx, x, labels) }); allocs != 0 {
		t.Fatalf("Gather allocates %v times", allocs)
	}
}

func TestGatherPanics(t *testing.T) {
	s := testSet()
	defer func() {
		if recover() == nil {
			t.Fatal("Gather into a short buffer did not panic")
		}
	}()
	s.Gather([]int{0, 1}, make([]float32, 3), make([]int32, 2))
}

func TestSubset(t *testing.T) {
	s := testSet()
	sub := s.Subset(2)
	if sub.N != 2 || sub.Dim != 2 || sub.Classes != 3 || len(sub.X) != 4 || len(sub.Labels) != 2 {
		t.Fatalf("Subset(2) = %+v", sub)
	}
	sub.X[0] = 99 // a view
	if s.X[0] != 99 {
		t.Fatal("Subset copied instead of sharing")
	}
	_ = append(sub.X, -1) // capped, so the parent is untouched
	if s.X[4] != 20 {
		t.Fatal("append to a Subset wrote into its parent")
	}
	if all := s.Subset(100); all.N != 4 {
		t.Fatalf("Subset(100).N = %d, want 4", all.N)
	}
}

// byteSet holds every byte value once, as 64 examples of 4 features.
func byteSet() *Set {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(255 - i)
	}
	return &Set{Bytes: b, ByteScale: 255, Labels: make([]int32, 64), N: 64, Dim: 4, Classes: 1}
}

// A byte-backed set gathers, bit for bit, the float32 values that
// ReadIDXImages makes of the same bytes (float32(b)/255), so training on MNIST
// held as bytes computes what it did on MNIST held as float32.
func TestGatherBytesMatchesFloat32(t *testing.T) {
	s := byteSet()
	x, _, _, _, err := ReadIDXImages(bytes.NewReader(idxImages(t, 64, 2, 2, s.Bytes)))
	if err != nil {
		t.Fatal(err)
	}
	asFloat := &Set{X: x, Labels: s.Labels, N: s.N, Dim: s.Dim, Classes: s.Classes}
	idx := []int{63, 0, 17, 17, 40}
	got, want := make([]float32, len(idx)*4), make([]float32, len(idx)*4)
	labels := make([]int32, len(idx))
	s.Gather(idx, got, labels)
	asFloat.Gather(idx, want, labels)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("feature %d: byte set gives %v (%#x), float32 set %v (%#x)",
				i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
	all := make([]float32, s.N*s.Dim)
	s.Features(0, s.N, all)
	for i, b := range s.Bytes {
		if want := float32(b) / 255; math.Float32bits(all[i]) != math.Float32bits(want) {
			t.Fatalf("Features: byte %d is %v, want %v", b, all[i], want)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { s.Gather(idx, got, labels) }); allocs != 0 {
		t.Fatalf("Gather of a byte set allocates %v times", allocs)
	}
}

func TestGatherBytesScale(t *testing.T) {
	s := &Set{Bytes: []byte{0, 1, 3, 200}, ByteScale: 2, N: 2, Dim: 2}
	x := make([]float32, 4)
	s.Gather([]int{1, 0}, x, make([]int32, 2))
	if !slices.Equal(x, []float32{1.5, 100, 0, 0.5}) {
		t.Fatalf("x = %v, want [1.5 100 0 0.5]", x)
	}
}

func TestFeatures(t *testing.T) {
	s := testSet()
	x := make([]float32, 4)
	s.Features(1, 3, x)
	if !slices.Equal(x, []float32{10, 11, 20, 21}) {
		t.Fatalf("Features(1, 3) = %v", x)
	}
	s.Features(4, 4, nil)
	for name, f := range map[string]func(){
		"past the end":   func() { s.Features(3, 5, make([]float32, 4)) },
		"reversed":       func() { s.Features(2, 1, nil) },
		"short buffer":   func() { s.Features(0, 2, make([]float32, 3)) },
		"negative start": func() { s.Features(-1, 1, make([]float32, 4)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Features did not panic", name)
				}
			}()
			f()
		}()
	}
}

func TestSubsetBytes(t *testing.T) {
	s := byteSet()
	sub := s.Subset(3)
	if sub.X != nil || len(sub.Bytes) != 12 || cap(sub.Bytes) != 12 || sub.ByteScale != 255 || len(sub.Labels) != 3 {
		t.Fatalf("Subset(3) = %+v", sub)
	}
	x, whole := make([]float32, 12), make([]float32, 12)
	sub.Features(0, 3, x)
	s.Features(0, 3, whole)
	if !slices.Equal(x, whole) {
		t.Fatalf("Subset features %v, parent's %v", x, whole)
	}
}
