package dataset

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
)

// The processes of one machine share decoded pixels through a cache
// directory: each image file is decoded once into a cache file, which every
// load maps read-only and shared, so N workers hold one copy in the page
// cache and each one's proportional set size counts 1/N of it.
//
// A cache file is named by the SHA-256 of the image file it was decoded from
// (gzip or raw) and laid out as, little-endian:
//
//	[0, 8)    magic "RTPIXv1\n"
//	[8, 20)   n, rows, cols (uint32 each)
//	[20, 24)  zero
//	[24, 32)  payload length n*rows*cols (uint64)
//	[32, 64)  SHA-256 of the payload followed by bytes [0, 32)
//	[64, …)   the payload: the pixels, [n, rows*cols] row-major
//
// It is written under a temporary name and renamed into place, and it is
// verified in full by every load that maps it: a truncated or corrupt file
// is rebuilt, never used. Files are replaced, never written in place, so a
// process that mapped one keeps consistent pixels; deleting the directory
// is safe at any time.

// CacheDirEnv names the environment variable that overrides the directory
// decoded MNIST pixels are cached in (CacheDir).
const CacheDirEnv = "RINGTRAIN_CACHE_DIR"

const (
	cacheMagic     = "RTPIXv1\n"
	cacheHeaderLen = 64
	cacheSumOff    = 32
)

// errNoCache reports that the cache directory cannot hold a cache file; the
// loader then reads the pixels into memory private to the process.
var errNoCache = errors.New("dataset: pixel cache unavailable")

// CacheDir is the directory decoded MNIST pixels are shared through:
// $RINGTRAIN_CACHE_DIR if set, else ringtrain/mnist under the user's cache
// directory (os.UserCacheDir), or "" when neither is known.
func CacheDir() string {
	if d := os.Getenv(CacheDirEnv); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "ringtrain", "mnist")
}

// cacheName is the name of the cache file of an image file whose contents
// have SHA-256 sum.
func cacheName(sum []byte) string { return "images-" + hex.EncodeToString(sum) + ".pix" }

// readCachedImages decodes the IDX image file f through the cache directory
// dir: it maps the cache file of f's contents, building it first if it is
// missing or fails verification. errNoCache means dir cannot be used (not
// writable, not mappable) and f has been left unread past its start; any
// other error is f's.
func readCachedImages(f *os.File, dir string) (loadedImages, error) {
	if !sharedPixels || dir == "" {
		return loadedImages{}, errNoCache
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return loadedImages{}, fmt.Errorf("dataset: read IDX file: %w", err)
	}
	final := filepath.Join(dir, cacheName(h.Sum(nil)))
	if im, ok := openCache(final); ok {
		return im, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return loadedImages{}, errNoCache
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return loadedImages{}, errNoCache
	}
	defer unlock()
	// Another process may have built it while this one waited.
	if im, ok := openCache(final); ok {
		return im, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return loadedImages{}, fmt.Errorf("dataset: read IDX file: %w", err)
	}
	return buildCache(f, final)
}

// openCache maps the cache file at path and verifies it; ok is false when it
// is missing, unreadable or fails verification (it is then unmapped).
func openCache(path string) (im loadedImages, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return loadedImages{}, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() < cacheHeaderLen || st.Size() != int64(int(st.Size())) {
		return loadedImages{}, false
	}
	m, err := mapShared(f, int(st.Size()))
	if err != nil {
		return loadedImages{}, false
	}
	im, ok = verifyCache(m)
	if !ok {
		unmapPixels(m)
		return loadedImages{}, false
	}
	im.file = path
	return im, true
}

// verifyCache checks a whole cache file m (header, length and checksum) and
// returns the images it holds.
func verifyCache(m []byte) (loadedImages, bool) {
	if len(m) < cacheHeaderLen || string(m[:8]) != cacheMagic {
		return loadedImages{}, false
	}
	n := uint64(binary.LittleEndian.Uint32(m[8:]))
	rows := uint64(binary.LittleEndian.Uint32(m[12:]))
	cols := uint64(binary.LittleEndian.Uint32(m[16:]))
	size := binary.LittleEndian.Uint64(m[24:])
	if rows == 0 || cols == 0 || rows > maxIDXSide || cols > maxIDXSide || n > maxIDXBytes/(rows*cols) ||
		size != n*rows*cols || uint64(len(m)-cacheHeaderLen) != size {
		return loadedImages{}, false
	}
	h := sha256.New()
	h.Write(m[cacheHeaderLen:])
	h.Write(m[:cacheSumOff])
	if !bytes.Equal(h.Sum(nil), m[cacheSumOff:cacheHeaderLen]) {
		return loadedImages{}, false
	}
	return loadedImages{pix: m[cacheHeaderLen:], n: int(n), rows: int(rows), cols: int(cols)}, true
}

// buildCache decodes the image file src into a temporary file next to
// final, renames it to final and returns its mapping. The caller holds the
// directory's lock.
func buildCache(src io.Reader, final string) (loadedImages, error) {
	tmp, err := os.CreateTemp(filepath.Dir(final), filepath.Base(final)+".tmp-*")
	if err != nil {
		return loadedImages{}, errNoCache
	}
	done := false
	defer func() {
		tmp.Close()
		if !done {
			os.Remove(tmp.Name())
		}
	}()
	var cacheErr error // a failure of the cache file, not of src
	h := sha256.New()
	var m []byte
	pix, n, rows, cols, err := readIDXImages(src, func(r io.Reader, total int, what string) ([]byte, error) {
		m, cacheErr = writePayload(tmp, h, r, total, what)
		if cacheErr != nil {
			if errors.Is(cacheErr, ErrCorrupt) {
				return nil, cacheErr
			}
			return nil, errNoCache
		}
		return m[cacheHeaderLen:], nil
	})
	if err != nil {
		if m != nil {
			unmapPixels(m)
		}
		if cacheErr != nil && !errors.Is(cacheErr, ErrCorrupt) {
			return loadedImages{}, errNoCache
		}
		return loadedImages{}, err
	}
	var hdr [cacheHeaderLen]byte
	copy(hdr[:], cacheMagic)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(n))
	binary.LittleEndian.PutUint32(hdr[12:], uint32(rows))
	binary.LittleEndian.PutUint32(hdr[16:], uint32(cols))
	binary.LittleEndian.PutUint64(hdr[24:], uint64(len(pix)))
	h.Write(hdr[:cacheSumOff])
	copy(hdr[cacheSumOff:], h.Sum(nil))
	// The mapping is shared with the file, so it sees the header written.
	if _, err := tmp.WriteAt(hdr[:], 0); err != nil {
		unmapPixels(m)
		return loadedImages{}, errNoCache
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		unmapPixels(m)
		return loadedImages{}, errNoCache
	}
	done = true
	return loadedImages{pix: pix, n: n, rows: rows, cols: cols, file: final}, nil
}

// writePayload copies the total payload bytes of r into f after the header,
// adding them to h, and maps the whole file read-only. A short read of r is
// ErrCorrupt (readErr), as when reading into memory; any other error is f's.
func writePayload(f *os.File, h hash.Hash, r io.Reader, total int, what string) ([]byte, error) {
	if _, err := f.Seek(cacheHeaderLen, io.SeekStart); err != nil {
		return nil, err
	}
	buf := make([]byte, readChunk)
	for got := 0; got < total; {
		k, err := io.ReadFull(r, buf[:min(len(buf), total-got)])
		if err != nil {
			return nil, readErr(err, what, total, got+k)
		}
		if _, err := f.Write(buf[:k]); err != nil {
			return nil, err
		}
		h.Write(buf[:k])
		got += k
	}
	return mapShared(f, cacheHeaderLen+total)
}
