package dataset

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte)
// and the number of dimensions.
const (
	idxImagesMagic = 0x00000803
	idxLabelsMagic = 0x00000801

	// maxIDXBytes bounds the payload a header may announce, so that a
	// corrupt header fails cleanly instead of asking for absurd memory.
	maxIDXBytes = 1 << 36
	// maxIDXSide bounds each image side.
	maxIDXSide = 1 << 16
	// readChunk is the size of the buffer pixels are decoded through.
	readChunk = 64 << 10
)

// pixelScale maps a byte to byte/255.
var pixelScale = func() (t [256]float32) {
	for i := range t {
		t[i] = float32(i) / 255
	}
	return t
}()

// labelValue maps a byte to the label it encodes.
var labelValue = func() (t [256]int32) {
	for i := range t {
		t[i] = int32(i)
	}
	return t
}()

// readMapped reads the total payload bytes that follow an IDX header and
// returns table[b] for each byte b. The slice grows as data arrives, so a
// lying header cannot force a huge allocation. A short read is reported by
// readErr as a truncated `what`.
func readMapped[T any](r io.Reader, total int, table *[256]T, what string) ([]T, error) {
	out := make([]T, 0, min(total, 1<<24))
	buf := make([]byte, readChunk)
	for len(out) < total {
		got, err := io.ReadFull(r, buf[:min(len(buf), total-len(out))])
		for _, b := range buf[:got] {
			out = append(out, table[b])
		}
		if err != nil {
			return nil, readErr(err, what, total, len(out))
		}
	}
	return out, nil
}

// readBytes reads the total payload bytes that follow an IDX header. Its
// buffer starts at no more than 16 MiB and doubles, up to total, as data
// arrives, so that a lying header cannot force a huge allocation and a true
// one costs few copies (MNIST's 47 MB: two). A short read is reported by
// readErr as a truncated `what`.
func readBytes(r io.Reader, total int, what string) ([]byte, error) {
	out := make([]byte, min(total, 1<<24))
	got := 0
	for {
		k, err := io.ReadFull(r, out[got:])
		got += k
		if err != nil {
			return nil, readErr(err, what, total, got)
		}
		if got == total {
			return out, nil
		}
		grown := make([]byte, min(total, 2*len(out)))
		copy(grown, out)
		out = grown
	}
}

// ReadIDXImages reads an IDX3 unsigned-byte image file, gzip-compressed or
// raw (gzip is recognised by its 0x1f8b prefix). It returns the pixels as
// [n, rows*cols] row-major float32 values scaled to [0, 1] by dividing by
// 255. The file must hold exactly the bytes its header announces; anything
// else is an error wrapping ErrCorrupt that says what was expected and what
// was found. ReadIDXImageBytes reads the same files into a quarter of the
// memory.
func ReadIDXImages(r io.Reader) (x []float32, n, rows, cols int, err error) {
	pix, n, rows, cols, err := ReadIDXImageBytes(r)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	x = make([]float32, len(pix))
	for i, b := range pix {
		x[i] = pixelScale[b]
	}
	return x, n, rows, cols, nil
}

// ReadIDXImageBytes is ReadIDXImages returning the pixels as read, one byte
// each in [0, 255], [n, rows*cols] row-major; pixel b stands for the feature
// float32(b)/255 (a Set with ByteScale 255).
func ReadIDXImageBytes(r io.Reader) (pix []byte, n, rows, cols int, err error) {
	return readIDXImages(r, readBytes)
}

// readIDXImages is ReadIDXImageBytes reading the payload with read.
func readIDXImages(r io.Reader, read func(r io.Reader, total int, what string) ([]byte, error)) (pix []byte, n, rows, cols int, err error) {
	br, err := decompress(r)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	var hdr [16]byte
	if got, err := io.ReadFull(br, hdr[:4]); err != nil {
		return nil, 0, 0, 0, readErr(err, "IDX image header", len(hdr), got)
	}
	if err := checkMagic(hdr[:4], idxImagesMagic, "image"); err != nil {
		return nil, 0, 0, 0, err
	}
	if got, err := io.ReadFull(br, hdr[4:]); err != nil {
		return nil, 0, 0, 0, readErr(err, "IDX image header", len(hdr), 4+got)
	}
	n64 := uint64(binary.BigEndian.Uint32(hdr[4:]))
	r64 := uint64(binary.BigEndian.Uint32(hdr[8:]))
	c64 := uint64(binary.BigEndian.Uint32(hdr[12:]))
	if r64 == 0 || c64 == 0 || r64 > maxIDXSide || c64 > maxIDXSide {
		return nil, 0, 0, 0, fmt.Errorf("%w: IDX image header says images are %dx%d pixels, want each side in [1,%d]",
			ErrCorrupt, r64, c64, maxIDXSide)
	}
	if n64 > maxIDXBytes/(r64*c64) {
		return nil, 0, 0, 0, fmt.Errorf("%w: IDX image header says %d images of %dx%d pixels, more than the %d bytes allowed",
			ErrCorrupt, n64, r64, c64, uint64(maxIDXBytes))
	}
	n, rows, cols = int(n64), int(r64), int(c64)
	total := n * rows * cols
	pix, err = read(br, total, fmt.Sprintf("pixels of %d images of %dx%d", n, rows, cols))
	if err != nil {
		return nil, 0, 0, 0, err
	}
	if err := expectEOF(br, "IDX image file", 16+total); err != nil {
		return nil, 0, 0, 0, err
	}
	return pix, n, rows, cols, nil
}

// ReadIDXLabels reads an IDX1 unsigned-byte label file, gzip-compressed or
// raw. Labels are returned as read, in [0, 255]; range checks against the
// number of classes are the caller's.
func ReadIDXLabels(r io.Reader) ([]int32, error) {
	br, err := decompress(r)
	if err != nil {
		return nil, err
	}
	var hdr [8]byte
	if got, err := io.ReadFull(br, hdr[:4]); err != nil {
		return nil, readErr(err, "IDX label header", len(hdr), got)
	}
	if err := checkMagic(hdr[:4], idxLabelsMagic, "label"); err != nil {
		return nil, err
	}
	if got, err := io.ReadFull(br, hdr[4:]); err != nil {
		return nil, readErr(err, "IDX label header", len(hdr), 4+got)
	}
	n64 := uint64(binary.BigEndian.Uint32(hdr[4:]))
	total := int(n64)
	labels, err := readMapped(br, total, &labelValue, fmt.Sprintf("%d labels", total))
	if err != nil {
		return nil, err
	}
	if err := expectEOF(br, "IDX label file", 8+total); err != nil {
		return nil, err
	}
	return labels, nil
}

// decompress returns a buffered reader over r, transparently gunzipping it
// when it starts with the gzip magic 0x1f 0x8b.
func decompress(r io.Reader) (*bufio.Reader, error) {
	br := bufio.NewReaderSize(r, readChunk)
	head, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("dataset: read IDX file: %w", err)
	}
	if len(head) < 2 || head[0] != 0x1f || head[1] != 0x8b {
		return br, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: gzip header: %w", ErrCorrupt, err)
	}
	return bufio.NewReaderSize(zr, readChunk), nil
}

// checkMagic compares an IDX magic number with the one wanted for kind.
func checkMagic(b []byte, want uint32, kind string) error {
	got := binary.BigEndian.Uint32(b)
	if got == want {
		return nil
	}
	hint := ""
	switch {
	case got>>16 != 0:
		hint = "; this is not an IDX file"
	case got == idxImagesMagic:
		hint = "; this is an image file, were the image and label files swapped?"
	case got == idxLabelsMagic:
		hint = "; this is a label file, were the image and label files swapped?"
	}
	return fmt.Errorf("%w: IDX %s file has magic number 0x%08x, want 0x%08x%s", ErrCorrupt, kind, got, want, hint)
}

// readErr turns an error met while reading `what` into a clear one. A short
// read becomes ErrCorrupt saying how many bytes were wanted and found.
func readErr(err error, what string, want, got int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated: want %d bytes of %s, found %d", ErrCorrupt, want, what, got)
	}
	if isDecompressErr(err) {
		return fmt.Errorf("%w: gzip stream while reading %s: %w", ErrCorrupt, what, err)
	}
	return fmt.Errorf("dataset: read %s: %w", what, err)
}

// expectEOF checks that r has nothing after the size bytes its header
// announced. Reading to EOF also makes gzip verify its checksum.
func expectEOF(r io.Reader, what string, size int) error {
	var extra [512]byte
	trailing := 0
	for {
		got, err := r.Read(extra[:])
		trailing += got
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if isDecompressErr(err) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w: gzip stream at the end of %s: %w", ErrCorrupt, what, err)
			}
			return fmt.Errorf("dataset: read %s: %w", what, err)
		}
		if trailing > 0 {
			break
		}
	}
	if trailing > 0 {
		return fmt.Errorf("%w: %s: header announces %d bytes but the file is longer", ErrCorrupt, what, size)
	}
	return nil
}

func isDecompressErr(err error) bool {
	var ce flate.CorruptInputError
	return errors.As(err, &ce) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader)
}
