package dataset

import "syscall"

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
