package dataset

import (
	"os"
	"syscall"
)

// mapPixels returns n bytes of zeroed anonymous memory outside the Go heap.
// MAP_NORESERVE: the pages are committed as they are written, so a header
// that overstates its payload costs address space, not memory, until the
// short read is found.
func mapPixels(n int) ([]byte, bool) {
	if n == 0 {
		return nil, false
	}
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, false
	}
	return b, true
}

// sealPixels makes b read-only: a write into a loaded set faults instead of
// changing the data every later load of the file shares.
func sealPixels(b []byte) { _ = syscall.Mprotect(b, syscall.PROT_READ) }

func unmapPixels(b []byte) { _ = syscall.Munmap(b) }

// sharedPixels: image files are decoded once into a cache file that every
// process maps (pixelcache.go).
const sharedPixels = true

// mapShared maps the first size bytes of f read-only and shared: processes
// mapping the same file share its pages.
func mapShared(f *os.File, size int) ([]byte, error) {
	return syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
}

// lockDir takes an exclusive lock on the directory dir, held by the open
// file until unlock; a process that dies releases it.
func lockDir(dir string) (unlock func(), err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(d.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return func() { d.Close() }, nil
}
