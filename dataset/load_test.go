package dataset

import (
	"errors"
	"strings"
	"testing"
)

func TestLoadSpec(t *testing.T) {
	t.Run("dir", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, 4, 2)
		train, test, err := Load(dir)
		if err != nil || train.N != 4 || test.N != 2 {
			t.Fatalf("Load(dir) = %v, %v, %v", train, test, err)
		}
	})
	t.Run("csv auto header", func(t *testing.T) {
		trainPath := writeFile(t, "train.csv", "x1,x2,y\n1,2,0\n3,4,1\n")
		testPath := writeFile(t, "test.csv", "5,6,4\n")
		train, test, err := Load("csv:" + trainPath + "," + testPath)
		if err != nil {
			t.Fatal(err)
		}
		if train.N != 2 || test.N != 1 || train.Dim != 2 || train.Classes != 5 || test.Classes != 5 {
			t.Fatalf("train %+v test %+v", train, test)
		}
	})
	t.Run("csv dim mismatch", func(t *testing.T) {
		trainPath := writeFile(t, "train.csv", "1,2,0\n")
		testPath := writeFile(t, "test.csv", "1,0\n")
		_, _, err := Load("csv:" + trainPath + "," + testPath)
		if !errors.Is(err, ErrMismatch) {
			t.Fatalf("err = %v, want ErrMismatch", err)
		}
	})
	for _, spec := range []string{"", "mnist2", "csv:only.csv", "csv:a.csv,", "/no/such/dir"} {
		t.Run("bad "+spec, func(t *testing.T) {
			_, _, err := Load(spec)
			if !errors.Is(err, ErrBadSpec) {
				t.Fatalf("err = %v, want ErrBadSpec", err)
			}
			for _, w := range []string{"--data", spec, "csv:TRAIN.csv,TEST.csv"} {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
