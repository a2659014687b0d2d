//go:build linux

// The pixel cache exists on Linux only (pixels_linux.go); elsewhere every
// load keeps a private copy.

package dataset

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeImages writes a gzipped IDX image file of n 2x3 images and returns
// its path and its pixels.
func writeImages(t *testing.T, n int) (path string, pix []byte) {
	t.Helper()
	pix = testPixels(n, 2, 3)
	path = filepath.Join(t.TempDir(), MNISTTrainImages+".gz")
	if err := os.WriteFile(path, gzipBytes(t, idxImages(t, n, 2, 3, pix)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, pix
}

// readImagesFile is readImages of the file at path, past the per-process
// memo, so that each call goes to the cache directory.
func readImagesFile(t *testing.T, path, cacheDir string) loadedImages {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	im, err := readImages(f, cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// checkImages checks that im holds the n 2x3 images pix, bit for bit.
func checkImages(t *testing.T, im loadedImages, n int, pix []byte) {
	t.Helper()
	if im.n != n || im.rows != 2 || im.cols != 3 || !bytes.Equal(im.pix, pix) {
		t.Fatalf("loaded %d images of %dx%d, pixels equal: %v; want %d of 2x3", im.n, im.rows, im.cols, bytes.Equal(im.pix, pix), n)
	}
}

// cacheFiles lists the files of dir.
func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A cached load holds the same bits as reading the file into memory.
func TestPixelCacheSameBits(t *testing.T) {
	path, pix := writeImages(t, 17)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, n, _, _, err := ReadIDXImageBytes(bytes.NewReader(raw))
	if err != nil || !bytes.Equal(want, pix) {
		t.Fatalf("uncached read: %v", err)
	}
	dir := t.TempDir()
	built := readImagesFile(t, path, dir)
	mapped := readImagesFile(t, path, dir)
	for _, im := range []loadedImages{built, mapped} {
		checkImages(t, im, n, want)
		if filepath.Dir(im.file) != dir {
			t.Fatalf("pixels came from %q, want a file in %s", im.file, dir)
		}
	}
	if names := cacheFiles(t, dir); len(names) != 1 || !strings.HasSuffix(names[0], ".pix") {
		t.Fatalf("cache directory holds %v, want one .pix file", names)
	}
}

// A cache file that is truncated, corrupt or not one at all is rebuilt, not
// used. It is replaced by rename, as another process would, so that the
// mapping of the first load keeps its pages.
func TestPixelCacheCorruptRebuilt(t *testing.T) {
	path, pix := writeImages(t, 9)
	for _, tc := range []struct {
		name    string
		corrupt func(b []byte) []byte
	}{
		{"pixel flipped", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }},
		{"header count", func(b []byte) []byte { b[8]++; return b }},
		{"checksum", func(b []byte) []byte { b[cacheSumOff] ^= 0x80; return b }},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-5] }},
		{"header only", func(b []byte) []byte { return b[:cacheHeaderLen] }},
		{"longer", func(b []byte) []byte { return append(b, 0) }},
		{"empty", func(b []byte) []byte { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			first := readImagesFile(t, path, dir)
			good, err := os.ReadFile(first.file)
			if err != nil {
				t.Fatal(err)
			}
			tmp := first.file + ".corrupt"
			if err := os.WriteFile(tmp, tc.corrupt(bytes.Clone(good)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, first.file); err != nil {
				t.Fatal(err)
			}
			again := readImagesFile(t, path, dir)
			checkImages(t, again, 9, pix)
			if again.file != first.file {
				t.Fatalf("rebuilt into %q, want %q", again.file, first.file)
			}
			if rebuilt, err := os.ReadFile(first.file); err != nil || !bytes.Equal(rebuilt, good) {
				t.Fatalf("the cache file was not rebuilt as it was first written (%v)", err)
			}
			checkImages(t, first, 9, pix)
		})
	}
}

// Where the cache directory cannot be made, the pixels are read into
// private memory, the same bits.
func TestPixelCacheUnwritableFallsBack(t *testing.T) {
	path, pix := writeImages(t, 5)
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(notDir, "cache"), ""} {
		im := readImagesFile(t, path, dir)
		checkImages(t, im, 5, pix)
		if im.file != "" {
			t.Fatalf("cache dir %q: pixels came from %q, want private memory", dir, im.file)
		}
	}
}

// A corrupt image file is reported as when reading it into memory, and
// leaves nothing in the cache directory.
func TestPixelCacheCorruptSource(t *testing.T) {
	good := idxImages(t, 4, 2, 3, testPixels(4, 2, 3))
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 7),
		"gzip":      gzipBytes(t, good)[:30],
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "images")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dir := t.TempDir()
			if _, err := readImages(f, dir); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if names := cacheFiles(t, dir); len(names) != 0 {
				t.Fatalf("cache directory holds %v after a corrupt file", names)
			}
		})
	}
}

// LoadMNIST caches in $RINGTRAIN_CACHE_DIR and says so in Set.BytesFile.
func TestLoadMNISTCacheDirEnv(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "cache")
	t.Setenv(CacheDirEnv, dir)
	if got := CacheDir(); got != dir {
		t.Fatalf("CacheDir() = %q, want %q", got, dir)
	}
	data := t.TempDir()
	writeMNIST(t, data, 12, 7)
	train, test, err := LoadMNIST(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Set{train, test, train.Subset(3)} {
		if filepath.Dir(s.BytesFile) != dir {
			t.Fatalf("BytesFile = %q, want a file in %s", s.BytesFile, dir)
		}
	}
	if train.BytesFile == test.BytesFile {
		t.Fatal("train and test pixels share a cache file")
	}
}
