package dataset

import (
	"io"
	"os"
	"sync"
	"time"
)

// Pixels of loaded image files live outside the Go heap where the system
// allows (pixelsOffHeap): the garbage collector then neither scans them nor
// counts them in its heap goal, which would otherwise let a worker's heap
// grow by twice their size between collections. Such memory is never freed,
// so it is kept once per file: loading the same unchanged file again returns
// the same read-only bytes.

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
}

// imageCache holds the pixels read from each image file, by fileKey. Its
// slices are read-only (the pages are sealed where the system allows) and
// live as long as the process.
var imageCache struct {
	mu     sync.Mutex
	byFile map[fileKey]loadedImages
}

// loadImages reads the IDX image file at path, or returns what an earlier
// call read from it if the file is unchanged.
func loadImages(path string) (pix []byte, n, rows, cols int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, 0, 0, err
	}
	key := fileKey{path: path, size: st.Size(), mtime: st.ModTime()}
	imageCache.mu.Lock()
	defer imageCache.mu.Unlock()
	if im, ok := imageCache.byFile[key]; ok {
		return im.pix, im.n, im.rows, im.cols, nil
	}
	pix, n, rows, cols, err = readIDXImages(f, readPixels)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	if imageCache.byFile == nil {
		imageCache.byFile = make(map[fileKey]loadedImages)
	}
	imageCache.byFile[key] = loadedImages{pix, n, rows, cols}
	return pix, n, rows, cols, nil
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
