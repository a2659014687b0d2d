package dataset

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"unsafe"
)

// mappedFile returns the device and inode of the file mapped at b's first
// byte, from /proc/self/maps.
func mappedFile(t *testing.T, b []byte) string {
	t.Helper()
	addr := uintptr(unsafe.Pointer(&b[0]))
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		var lo, hi uintptr
		if _, err := fmt.Sscanf(fields[0], "%x-%x", &lo, &hi); err != nil {
			t.Fatal(err)
		}
		if lo <= addr && addr < hi {
			if len(fields) < 6 || fields[4] == "0" {
				t.Fatalf("pixels at %#x are not a file mapping: %s", addr, sc.Text())
			}
			return fields[3] + " " + fields[4]
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return ""
}

// sameMapping checks that a and b map the same file, so that they share
// their pages.
func sameMapping(t *testing.T, a, b loadedImages) {
	t.Helper()
	if fa, fb := mappedFile(t, a.pix), mappedFile(t, b.pix); fa != fb {
		t.Fatalf("pixels map files %s and %s, want one file", fa, fb)
	}
}

// Two loads of one image file map the same cache file: the second one,
// like another process, shares the first one's pages.
func TestPixelCacheLoadsShare(t *testing.T) {
	path, pix := writeImages(t, 1000)
	dir := t.TempDir()
	built := readImagesFile(t, path, dir)
	mapped := readImagesFile(t, path, dir)
	checkImages(t, mapped, 1000, pix)
	if &built.pix[0] == &mapped.pix[0] {
		t.Fatal("the second load returned the first one's slice; want a mapping of its own")
	}
	sameMapping(t, built, mapped)
	st, err := os.Stat(built.file)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint(statIno(st)); !strings.HasSuffix(mappedFile(t, mapped.pix), " "+want) {
		t.Fatalf("pixels map %s, want inode %s of %s", mappedFile(t, mapped.pix), want, built.file)
	}
}

// Loads racing for a missing cache file build it once and all map it.
func TestPixelCacheConcurrentLoads(t *testing.T) {
	path, pix := writeImages(t, 31)
	dir := t.TempDir()
	ims := make([]loadedImages, 4)
	var wg sync.WaitGroup
	for i := range ims {
		wg.Go(func() {
			f, err := os.Open(path)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			if ims[i], err = readImages(f, dir); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, im := range ims {
		checkImages(t, im, 31, pix)
		sameMapping(t, im, ims[0])
	}
	if names := cacheFiles(t, dir); len(names) != 1 {
		t.Fatalf("cache directory holds %v, want one file", names)
	}
}

func statIno(st os.FileInfo) uint64 { return st.Sys().(*syscall.Stat_t).Ino }
