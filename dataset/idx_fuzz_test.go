package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"testing"
)

// idxFuzzPrealloc is the most readMapped may reserve before any payload
// arrives: 1<<24 elements of 4 bytes.
const idxFuzzPrealloc = 4 << 24

// fuzzAllocated returns the bytes f allocates (all goroutines; the fuzz
// worker runs one input at a time).
func fuzzAllocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// idxFuzzFile is an IDX file: the magic, the dimensions and the payload.
func idxFuzzFile(magic uint32, dims []uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magic)
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, d)
	}
	return append(b, payload...)
}

func idxFuzzGzip(tb testing.TB, data []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// FuzzReadIDX feeds each input to both IDX readers. Each must return an
// error wrapping ErrCorrupt, or values that fill the shape the header
// announces and encode back to exactly the (decompressed) input; and
// neither may allocate for a header's claims more than the payload it
// found, beyond the fixed initial reservation of readMapped.
func FuzzReadIDX(f *testing.F) {
	pixels := make([]byte, 2*3*4)
	for i := range pixels {
		pixels[i] = byte(i * 11)
	}
	images := idxFuzzFile(idxImagesMagic, []uint32{2, 3, 4}, pixels)
	labels := idxFuzzFile(idxLabelsMagic, []uint32{5}, []byte{0, 9, 255, 3, 1})
	f.Add(images)
	f.Add(labels)
	f.Add(idxFuzzGzip(f, images))
	f.Add(idxFuzzGzip(f, labels))
	f.Add(idxFuzzFile(idxImagesMagic, []uint32{0, 28, 28}, nil))
	f.Add(idxFuzzFile(idxImagesMagic, []uint32{math.MaxUint32, 1, 1}, nil))
	f.Add(idxFuzzFile(idxImagesMagic, []uint32{1, maxIDXSide + 1, 1}, []byte{1}))
	f.Add(idxFuzzFile(idxLabelsMagic, []uint32{math.MaxUint32}, []byte{1, 2}))
	f.Add(idxFuzzFile(idxLabelsMagic, []uint32{1}, []byte{7, 8}))
	f.Add(idxFuzzGzip(f, idxFuzzFile(idxLabelsMagic, []uint32{3}, []byte{1, 2})))
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, b []byte) {
		// What the readers see: the gunzipped bytes, if b is valid gzip.
		plain := b
		if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err == nil {
				plain, err = io.ReadAll(io.LimitReader(zr, 64<<20))
			}
			if err != nil {
				plain = nil // corrupt gzip: both readers must fail
			}
		}
		bound := uint64(idxFuzzPrealloc) + 16*uint64(len(plain)+len(b)) + 1<<20

		var x []float32
		var n, rows, cols int
		var err error
		if got := fuzzAllocated(func() { x, n, rows, cols, err = ReadIDXImages(bytes.NewReader(b)) }); got > bound {
			t.Fatalf("ReadIDXImages of %d bytes allocated %d bytes (bound %d)", len(b), got, bound)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ReadIDXImages error does not wrap ErrCorrupt: %v", err)
			}
		} else {
			if plain == nil || n < 0 || rows < 1 || cols < 1 || len(x) != n*rows*cols {
				t.Fatalf("ReadIDXImages gave %d values for %d images of %dx%d", len(x), n, rows, cols)
			}
			payload := make([]byte, len(x))
			for i, v := range x {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("pixel %d is %v, outside [0, 1]", i, v)
				}
				payload[i] = byte(math.Round(float64(v) * 255))
			}
			if enc := idxFuzzFile(idxImagesMagic, []uint32{uint32(n), uint32(rows), uint32(cols)}, payload); !bytes.Equal(enc, plain) {
				t.Fatalf("images re-encode to %d bytes that differ from the %d read", len(enc), len(plain))
			}
		}

		var ls []int32
		if got := fuzzAllocated(func() { ls, err = ReadIDXLabels(bytes.NewReader(b)) }); got > bound {
			t.Fatalf("ReadIDXLabels of %d bytes allocated %d bytes (bound %d)", len(b), got, bound)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("ReadIDXLabels error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		if plain == nil {
			t.Fatalf("ReadIDXLabels accepted corrupt gzip")
		}
		payload := make([]byte, len(ls))
		for i, l := range ls {
			if l < 0 || l > 255 {
				t.Fatalf("label %d is %d, outside [0, 255]", i, l)
			}
			payload[i] = byte(l)
		}
		if enc := idxFuzzFile(idxLabelsMagic, []uint32{uint32(len(ls))}, payload); !bytes.Equal(enc, plain) {
			t.Fatalf("labels re-encode to %d bytes that differ from the %d read", len(enc), len(plain))
		}
	})
}
