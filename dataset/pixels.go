package dataset

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Pixels of loaded image files live outside the Go heap where the system
// allows: the garbage collector then neither scans them nor counts them in
// its heap goal, which would otherwise let a worker's heap grow by twice
// their size between collections. They are mapped from a cache file shared
// by the processes of the machine (pixelcache.go) or, where there is no
// usable cache directory, held in memory private to the process
// (pixelsOffHeap). Such memory is never freed, so it is kept once per file:
// loading the same unchanged file again returns the same read-only bytes.

// fileKey identifies a file's contents well enough to reuse what was read
// from it: its path, size and modification time.
type fileKey struct {
	path  string
	size  int64
	mtime time.Time
}

type loadedImages struct {
	pix           []byte
	n, rows, cols int
	// file is the cache file pix maps, shared with other processes; empty
	// when pix is private to this process.
	file string
}

// imageCache holds the pixels read from each image file, by fileKey. Its
// slices are read-only (the pages are mapped or sealed read-only where the
// system allows) and live as long as the process.
var imageCache struct {
	mu     sync.Mutex
	byFile map[fileKey]loadedImages
}

// loadImages reads the IDX image file at path through the cache directory
// cacheDir (none if ""), or returns what an earlier call read from it if
// the file is unchanged.
func loadImages(path, cacheDir string) (loadedImages, error) {
	f, err := os.Open(path)
	if err != nil {
		return loadedImages{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return loadedImages{}, err
	}
	key := fileKey{path: path, size: st.Size(), mtime: st.ModTime()}
	imageCache.mu.Lock()
	defer imageCache.mu.Unlock()
	if im, ok := imageCache.byFile[key]; ok {
		return im, nil
	}
	im, err := readImages(f, cacheDir)
	if err != nil {
		return loadedImages{}, err
	}
	if imageCache.byFile == nil {
		imageCache.byFile = make(map[fileKey]loadedImages)
	}
	imageCache.byFile[key] = im
	return im, nil
}

// readImages reads the IDX image file f: mapped from its file in the cache
// directory cacheDir, or, when that directory cannot be used, into private
// memory.
func readImages(f *os.File, cacheDir string) (loadedImages, error) {
	im, err := readCachedImages(f, cacheDir)
	if !errors.Is(err, errNoCache) {
		return im, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return loadedImages{}, fmt.Errorf("dataset: read IDX file: %w", err)
	}
	pix, n, rows, cols, err := readIDXImages(f, readPixels)
	if err != nil {
		return loadedImages{}, err
	}
	return loadedImages{pix: pix, n: n, rows: rows, cols: cols}, nil
}

// readPixels reads total bytes into memory outside the Go heap, sealed
// read-only once full; where that memory cannot be had it reads into the
// heap (readBytes).
func readPixels(r io.Reader, total int, what string) ([]byte, error) {
	out, ok := mapPixels(total)
	if !ok {
		return readBytes(r, total, what)
	}
	if got, err := io.ReadFull(r, out); err != nil {
		unmapPixels(out)
		return nil, readErr(err, what, total, got)
	}
	sealPixels(out)
	return out, nil
}
