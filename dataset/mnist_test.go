package dataset

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeMNIST writes a small synthetic MNIST into dir: train images are
// gzipped, the rest raw, to cover both.
func writeMNIST(t *testing.T, dir string, nTrain, nTest int) {
	t.Helper()
	const rows, cols = 2, 3
	trainLabels := make([]byte, nTrain)
	for i := range trainLabels {
		trainLabels[i] = byte(i % 10)
	}
	testLabels := make([]byte, nTest)
	for i := range testLabels {
		testLabels[i] = byte((i + 3) % 10)
	}
	files := map[string][]byte{
		MNISTTrainImages + ".gz": gzipBytes(t, idxImages(t, nTrain, rows, cols, testPixels(nTrain, rows, cols))),
		MNISTTrainLabels:         idxLabels(t, trainLabels),
		MNISTTestImages:          idxImages(t, nTest, rows, cols, testPixels(nTest, rows, cols)),
		MNISTTestLabels + ".gz":  gzipBytes(t, idxLabels(t, testLabels)),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadMNISTSynthetic(t *testing.T) {
	dir := t.TempDir()
	writeMNIST(t, dir, 12, 7)
	train, test, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 12 || test.N != 7 || train.Dim != 6 || test.Dim != 6 || train.Classes != 10 {
		t.Fatalf("train N=%d Dim=%d Classes=%d, test N=%d Dim=%d", train.N, train.Dim, train.Classes, test.N, test.Dim)
	}
	if train.Labels[11] != 1 || test.Labels[0] != 3 || train.X != nil || len(train.Bytes) != 72 || train.ByteScale != 255 {
		t.Fatalf("labels %v %v, len(X) %d, len(Bytes) %d, ByteScale %v",
			train.Labels, test.Labels, len(train.X), len(train.Bytes), train.ByteScale)
	}
}

// Loading the same unchanged files again shares the pixels read the first
// time; a file rewritten since is read anew.
func TestLoadMNISTReusesPixels(t *testing.T) {
	dir := t.TempDir()
	writeMNIST(t, dir, 12, 7)
	first, _, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if &again.Bytes[0] != &first.Bytes[0] {
		t.Fatal("a second load of unchanged files read the pixels again")
	}
	writeMNIST(t, dir, 13, 7)
	changed, _, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if changed.N != 13 || len(changed.Bytes) != 13*6 || &changed.Bytes[0] == &first.Bytes[0] {
		t.Fatalf("after the file changed: N %d, %d bytes", changed.N, len(changed.Bytes))
	}
	if !bytes.Equal(changed.Bytes, testPixels(13, 2, 3)) || !bytes.Equal(first.Bytes, testPixels(12, 2, 3)) {
		t.Fatal("pixels differ from the files written")
	}
}

func TestLoadMNISTErrors(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, 3, 3)
		os.Remove(filepath.Join(dir, MNISTTestImages))
		_, _, err := LoadMNIST(dir)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), MNISTTestImages) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("count mismatch", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, 3, 3)
		if err := os.WriteFile(filepath.Join(dir, MNISTTrainLabels), idxLabels(t, []byte{1, 2}), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadMNIST(dir)
		if !errors.Is(err, ErrMismatch) {
			t.Fatalf("err = %v, want ErrMismatch", err)
		}
		for _, want := range []string{MNISTTrainLabels, "2 labels", MNISTTrainImages, "holds 3 images"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %q, want it to name %q", err, want)
			}
		}
	})
	t.Run("label out of range", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, 3, 3)
		if err := os.WriteFile(filepath.Join(dir, MNISTTrainLabels), idxLabels(t, []byte{1, 10, 2}), 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadMNIST(dir)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "label 10 of example 1") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("corrupt file named", func(t *testing.T) {
		dir := t.TempDir()
		writeMNIST(t, dir, 3, 3)
		path := filepath.Join(dir, MNISTTestImages)
		if err := os.WriteFile(path, []byte{0, 0, 8, 3, 0}, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _, err := LoadMNIST(dir)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
			t.Fatalf("err = %v, want ErrCorrupt naming %s", err, path)
		}
	})
}

func TestFindMNISTOrder(t *testing.T) {
	ctx := context.Background()
	good := t.TempDir()
	writeMNIST(t, good, 2, 2)
	empty := t.TempDir()

	if dir, err := findMNIST(ctx, good, empty, "no-such-go-command"); err != nil || dir != good {
		t.Fatalf("env dir: got %q, %v", dir, err)
	}
	_, err := findMNIST(ctx, empty, good, "no-such-go-command")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), MNISTDirEnv+"="+empty) {
		t.Fatalf("bad env dir: err = %v", err)
	}
	if dir, err := findMNIST(ctx, "", good, "no-such-go-command"); err != nil || dir != good {
		t.Fatalf("image dir: got %q, %v", dir, err)
	}
	_, err = findMNIST(ctx, "", empty, "no-such-go-command")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("no go: err = %v, want ErrNotFound", err)
	}
	for _, want := range []string{"not on PATH", MNISTDirEnv, "make data"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("no go: err = %q, want it to mention %q", err, want)
		}
	}
}

// TestRealMNIST needs the GoMNIST module in the module cache (`make data`)
// or $RINGTRAIN_MNIST_DIR.
func TestRealMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 55 MB of MNIST; run without -short after `make data`")
	}
	dir, err := FindMNIST()
	if err != nil {
		t.Fatal(err)
	}
	train, test, err := LoadMNIST(dir)
	if err != nil {
		t.Fatal(err)
	}
	if train.N != 60000 || test.N != 10000 || train.Dim != 784 || test.Dim != 784 || train.Classes != 10 {
		t.Fatalf("train %d×%d, test %d×%d, classes %d", train.N, train.Dim, test.N, test.Dim, train.Classes)
	}
	if train.Labels[0] != 5 || test.Labels[0] != 7 {
		t.Fatalf("first labels train %d test %d, want 5 and 7", train.Labels[0], test.Labels[0])
	}
	x := make([]float32, train.N*train.Dim)
	train.Features(0, train.N, x)
	var lo, hi float32 = 1, 0
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo != 0 || hi != 1 {
		t.Fatalf("pixel range [%v, %v], want [0, 1]", lo, hi)
	}
	var counts [10]int
	for _, l := range test.Labels {
		counts[l]++
	}
	for c, k := range counts {
		if k < 800 {
			t.Fatalf("test class %d has %d examples", c, k)
		}
	}
}
