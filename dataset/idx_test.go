package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// idxImages builds the bytes of an IDX3 image file.
func idxImages(t *testing.T, n, rows, cols int, pixels []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, v := range []uint32{idxImagesMagic, uint32(n), uint32(rows), uint32(cols)} {
		binary.Write(&b, binary.BigEndian, v)
	}
	b.Write(pixels)
	return b.Bytes()
}

// idxLabels builds the bytes of an IDX1 label file.
func idxLabels(t *testing.T, labels []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(idxLabelsMagic))
	binary.Write(&b, binary.BigEndian, uint32(len(labels)))
	b.Write(labels)
	return b.Bytes()
}

func gzipBytes(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// testPixels returns n*rows*cols bytes covering all values 0..255.
func testPixels(n, rows, cols int) []byte {
	p := make([]byte, n*rows*cols)
	for i := range p {
		p[i] = byte(i * 7)
	}
	return p
}

func TestReadIDXImagesRoundTrip(t *testing.T) {
	const n, rows, cols = 5, 3, 4
	pixels := testPixels(n, rows, cols)
	raw := idxImages(t, n, rows, cols, pixels)
	for name, data := range map[string][]byte{"raw": raw, "gzip": gzipBytes(t, raw)} {
		t.Run(name, func(t *testing.T) {
			x, gn, gr, gc, err := ReadIDXImages(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if gn != n || gr != rows || gc != cols {
				t.Fatalf("dims = %d,%d,%d, want %d,%d,%d", gn, gr, gc, n, rows, cols)
			}
			if len(x) != len(pixels) {
				t.Fatalf("len(x) = %d, want %d", len(x), len(pixels))
			}
			for i, p := range pixels {
				if want := float32(p) / 255; x[i] != want {
					t.Fatalf("x[%d] = %v, want %v", i, x[i], want)
				}
			}
		})
	}
}

func TestReadIDXImagesLarge(t *testing.T) {
	// More than one read chunk, so the streaming loop runs several times.
	const n, rows, cols = 200, 28, 28
	pixels := testPixels(n, rows, cols)
	x, _, _, _, err := ReadIDXImages(bytes.NewReader(gzipBytes(t, idxImages(t, n, rows, cols, pixels))))
	if err != nil {
		t.Fatal(err)
	}
	if len(x) != len(pixels) || x[len(x)-1] != float32(pixels[len(pixels)-1])/255 {
		t.Fatalf("len %d, last %v", len(x), x[len(x)-1])
	}
}

func TestReadIDXImageBytes(t *testing.T) {
	// More than the 16 MiB first buffer, so it grows (twice) as it reads.
	const n, rows, cols = 22000, 28, 28
	pixels := testPixels(n, rows, cols)
	pix, gn, gr, gc, err := ReadIDXImageBytes(bytes.NewReader(idxImages(t, n, rows, cols, pixels)))
	if err != nil {
		t.Fatal(err)
	}
	if gn != n || gr != rows || gc != cols || !bytes.Equal(pix, pixels) {
		t.Fatalf("dims %d,%d,%d and %d bytes, want %d,%d,%d and the %d written", gn, gr, gc, len(pix), n, rows, cols, len(pixels))
	}
	truncated := idxImages(t, n, rows, cols, pixels)
	truncated = truncated[:len(truncated)-1]
	if _, _, _, _, err := ReadIDXImageBytes(bytes.NewReader(truncated)); !errors.Is(err, ErrCorrupt) ||
		!strings.Contains(err.Error(), "want 17248000 bytes") || !strings.Contains(err.Error(), "found 17247999") {
		t.Fatalf("truncated after the buffer grew: err = %v", err)
	}
}

func TestReadIDXImagesEmpty(t *testing.T) {
	x, n, _, _, err := ReadIDXImages(bytes.NewReader(idxImages(t, 0, 28, 28, nil)))
	if err != nil || n != 0 || len(x) != 0 {
		t.Fatalf("got n=%d len=%d err=%v", n, len(x), err)
	}
}

func TestReadIDXImagesErrors(t *testing.T) {
	good := idxImages(t, 2, 2, 2, testPixels(2, 2, 2))
	flipped := gzipBytes(t, good)
	flipped[len(flipped)-6] ^= 0xff // inside the CRC32 trailer
	labelFile := idxLabels(t, []byte{1, 2})
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "want 16 bytes of IDX image header, found 0"},
		{"short header", good[:10], "want 16 bytes of IDX image header, found 10"},
		{"truncated pixels", good[:len(good)-3], "want 8 bytes of pixels of 2 images of 2x2, found 5"},
		{"truncated gzip", gzipBytes(t, good)[:20], "truncated"},
		{"gzip checksum", flipped, "gzip"},
		{"trailing bytes", append(append([]byte{}, good...), 0, 0), "header announces 24 bytes but the file is longer"},
		{"label file", labelFile, "magic number 0x00000801, want 0x00000803; this is a label file"},
		{"not idx", []byte("hello world, not an IDX file"), "this is not an IDX file"},
		{"zero rows", idxImages(t, 1, 0, 2, nil), "images are 0x2 pixels"},
		{"huge", idxImages(t, 1<<31, 1<<15, 1<<15, nil), "more than the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, _, err := ReadIDXImages(bytes.NewReader(tt.data))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestReadIDXLabels(t *testing.T) {
	labels := []byte{5, 0, 4, 1, 9, 255}
	raw := idxLabels(t, labels)
	for name, data := range map[string][]byte{"raw": raw, "gzip": gzipBytes(t, raw)} {
		t.Run(name, func(t *testing.T) {
			got, err := ReadIDXLabels(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(labels) {
				t.Fatalf("len = %d, want %d", len(got), len(labels))
			}
			for i := range labels {
				if got[i] != int32(labels[i]) {
					t.Fatalf("label %d = %d, want %d", i, got[i], labels[i])
				}
			}
		})
	}
}

func TestReadIDXLabelsErrors(t *testing.T) {
	good := idxLabels(t, []byte{1, 2, 3})
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"short header", good[:5], "want 8 bytes of IDX label header, found 5"},
		{"truncated", good[:len(good)-1], "want 3 bytes of 3 labels, found 2"},
		{"trailing", append(append([]byte{}, good...), 7), "longer"},
		{"image file", idxImages(t, 1, 1, 1, []byte{0}), "this is an image file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadIDXLabels(bytes.NewReader(tt.data))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrCorrupt containing %q", err, tt.want)
			}
		})
	}
}
