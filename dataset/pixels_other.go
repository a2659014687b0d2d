//go:build !linux

package dataset

import (
	"errors"
	"os"
)

// mapPixels: pixels are read into the Go heap on this system.
func mapPixels(n int) ([]byte, bool) { return nil, false }

func sealPixels(b []byte) {}

func unmapPixels(b []byte) {}

// sharedPixels: no pixel cache on this system; each process reads its own.
const sharedPixels = false

func mapShared(f *os.File, size int) ([]byte, error) {
	return nil, errors.ErrUnsupported
}

func lockDir(dir string) (unlock func(), err error) { return nil, errors.ErrUnsupported }
