package dataset

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadCSV(t *testing.T) {
	path := writeFile(t, "d.csv", "a,b,label\n0.5, -1,2\n1e-3,3,0\n\n4,5,1\n")
	s, err := LoadCSV(path, -1, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.N != 3 || s.Dim != 2 || s.Classes != 3 {
		t.Fatalf("N=%d Dim=%d Classes=%d", s.N, s.Dim, s.Classes)
	}
	wantX := []float32{0.5, -1, 1e-3, 3, 4, 5}
	for i := range wantX {
		if s.X[i] != wantX[i] {
			t.Fatalf("X = %v, want %v", s.X, wantX)
		}
	}
	if s.Labels[0] != 2 || s.Labels[1] != 0 || s.Labels[2] != 1 {
		t.Fatalf("Labels = %v", s.Labels)
	}

	// Label in the first column, no header.
	path = writeFile(t, "first.csv", "1,0.25,0.75\n0,1,2\n")
	s, err = LoadCSV(path, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.N != 2 || s.Dim != 2 || s.Labels[0] != 1 || s.X[0] != 0.25 || s.X[3] != 2 || s.Classes != 2 {
		t.Fatalf("got %+v", s)
	}
}

func TestLoadCSVErrors(t *testing.T) {
	tests := []struct {
		name     string
		content  string
		labelCol int
		header   bool
		want     []string
	}{
		{"non-numeric", "1,2,0\n3,x,1\n", -1, false, []string{":2:", "column 2", `"x"`, "finite number"}},
		{"named column", "f1,f2,y\n1,2,0\n3,oops,1\n", -1, true, []string{":3:", `column 2 ("f2")`, `"oops"`}},
		{"ragged", "1,2,0\n3,1\n", -1, false, []string{":2:", "2 fields, want 3"}},
		{"bad label", "1,2,0.5\n", -1, false, []string{":1:", "column 3", "non-negative integer label"}},
		{"negative label", "1,2,-1\n", -1, false, []string{"column 3", `"-1"`}},
		{"nan", "NaN,2,1\n", -1, false, []string{"column 1", "finite"}},
		{"empty", "", -1, false, []string{"is empty"}},
		{"header only", "a,b\n", -1, true, []string{"no data rows"}},
		{"one column", "1\n2\n", -1, false, []string{"at least one feature column"}},
		{"label column range", "1,2\n", 5, false, []string{"label column 5", "2 columns"}},
		{"quote", "1,\"2,0\n", -1, false, []string{":1:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "bad.csv", tt.content)
			_, err := LoadCSV(path, tt.labelCol, tt.header)
			if !errors.Is(err, ErrBadCSV) {
				t.Fatalf("err = %v, want ErrBadCSV", err)
			}
			for _, w := range append([]string{path}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
