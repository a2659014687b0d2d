package checkpoint

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

const (
	dtypeF32    = "F32"
	metadataKey = "__metadata__"
	// maxHeaderLen is the largest JSON header accepted, as in the reference
	// safetensors implementation.
	maxHeaderLen = 100_000_000
	// headerAlign is the multiple the header length is padded to.
	headerAlign = 8
)

// Tensor is a named float32 array. Data holds the product of Shape
// elements in row-major order; an empty Shape is a scalar.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// numel returns the number of elements of shape, or -1 if a dimension is
// negative or the product overflows limit.
func numel(shape []int, limit int) int {
	n := 1
	for _, d := range shape {
		if d < 0 || (d > 0 && n > limit/d) {
			return -1
		}
		n *= d
	}
	return n
}

// WriteSafetensors writes tensors to w in the safetensors format, dtype F32,
// in sorted name order, with metadata (which may be nil) as __metadata__.
// It returns an error wrapping ErrInvalid if a name is empty, duplicated or
// reserved, or a tensor's data does not match its shape.
func WriteSafetensors(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	sorted := slices.Clone(tensors)
	slices.SortFunc(sorted, func(a, b Tensor) int { return strings.Compare(a.Name, b.Name) })
	for i, t := range sorted {
		switch {
		case t.Name == "" || t.Name == metadataKey:
			return fmt.Errorf("%w: tensor name %q is reserved or empty", ErrInvalid, t.Name)
		case i > 0 && sorted[i-1].Name == t.Name:
			return fmt.Errorf("%w: tensor name %q appears twice", ErrInvalid, t.Name)
		case numel(t.Shape, math.MaxInt/4) != len(t.Data):
			return fmt.Errorf("%w: tensor %q has shape %v but %d elements", ErrInvalid, t.Name, t.Shape, len(t.Data))
		}
	}
	header, err := safetensorsHeader(sorted, metadata)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	bw.Write(lenBuf[:])
	bw.Write(header)
	var word [4]byte
	for _, t := range sorted {
		for _, v := range t.Data {
			binary.LittleEndian.PutUint32(word[:], math.Float32bits(v))
			bw.Write(word[:])
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("checkpoint: write safetensors: %w", err)
	}
	return nil
}

// safetensorsHeader builds the JSON header, metadata first and tensors in
// the order given, padded with spaces to a multiple of 8 bytes.
func safetensorsHeader(sorted []Tensor, metadata map[string]string) ([]byte, error) {
	var h bytes.Buffer
	h.WriteByte('{')
	if len(metadata) > 0 {
		h.WriteString(`"` + metadataKey + `":`)
		if err := writeJSON(&h, metadata); err != nil {
			return nil, err
		}
	}
	offset := 0
	for _, t := range sorted {
		if h.Len() > 1 {
			h.WriteByte(',')
		}
		if err := writeJSON(&h, t.Name); err != nil {
			return nil, err
		}
		h.WriteString(`:{"dtype":"` + dtypeF32 + `","shape":[`)
		for i, d := range t.Shape {
			if i > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.Itoa(d))
		}
		end := offset + 4*len(t.Data)
		fmt.Fprintf(&h, `],"data_offsets":[%d,%d]}`, offset, end)
		offset = end
	}
	h.WriteByte('}')
	for h.Len()%headerAlign != 0 {
		h.WriteByte(' ')
	}
	return h.Bytes(), nil
}

// writeJSON appends v as compact JSON without HTML escaping.
func writeJSON(b *bytes.Buffer, v any) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

// ReadSafetensors reads a whole safetensors stream. Tensors come back in
// sorted name order; metadata is nil when the file has none. Malformed
// input gives an error wrapping ErrCorrupt, a dtype other than F32 one
// wrapping ErrUnsupported.
func ReadSafetensors(r io.Reader) (tensors []Tensor, metadata map[string]string, err error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint: read safetensors: %w", err)
	}
	return decodeSafetensors(b)
}

// ReadSafetensorsFile reads the safetensors file at path; errors name it.
func ReadSafetensorsFile(path string) (tensors []Tensor, metadata map[string]string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint: %w", err)
	}
	tensors, metadata, err = decodeSafetensors(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return tensors, metadata, nil
}

type tensorInfo struct {
	Dtype       string  `json:"dtype"`
	Shape       []int64 `json:"shape"`
	DataOffsets []int64 `json:"data_offsets"`
}

// decodeSafetensors parses and validates a complete safetensors file.
func decodeSafetensors(b []byte) ([]Tensor, map[string]string, error) {
	if len(b) < 8 {
		return nil, nil, fmt.Errorf("%w: safetensors file is %d bytes, shorter than its 8-byte header length", ErrCorrupt, len(b))
	}
	n := binary.LittleEndian.Uint64(b)
	if n > maxHeaderLen || n > uint64(len(b)-8) {
		return nil, nil, fmt.Errorf("%w: safetensors header length is %d but the file has %d bytes after it (limit %d)",
			ErrCorrupt, n, len(b)-8, maxHeaderLen)
	}
	header, data := b[8:8+n], b[8+n:]
	if len(header) == 0 || header[0] != '{' {
		return nil, nil, fmt.Errorf("%w: safetensors header does not start with '{'", ErrCorrupt)
	}

	names, infos, metadata, err := parseHeader(header)
	if err != nil {
		return nil, nil, err
	}
	// Offsets must tile the data exactly: sorted by start, each tensor
	// begins where the previous ended, the last ends at the end of file.
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		oa, ob := infos[a].DataOffsets, infos[b].DataOffsets
		return cmp.Or(cmp.Compare(oa[0], ob[0]), cmp.Compare(oa[1], ob[1]))
	})
	var next int64
	for _, i := range order {
		if end := infos[i].DataOffsets[1]; end > int64(len(data)) {
			return nil, nil, fmt.Errorf("%w: tensor %q has data_offsets %v, past the %d data bytes of the file",
				ErrCorrupt, names[i], infos[i].DataOffsets, len(data))
		}
		if begin := infos[i].DataOffsets[0]; begin != next {
			return nil, nil, fmt.Errorf("%w: tensor %q data starts at byte %d, want %d (tensors must be contiguous, without gaps or overlap)",
				ErrCorrupt, names[i], begin, next)
		}
		next = infos[i].DataOffsets[1]
	}
	if next != int64(len(data)) {
		return nil, nil, fmt.Errorf("%w: safetensors tensors cover %d data bytes but the file has %d", ErrCorrupt, next, len(data))
	}

	tensors := make([]Tensor, len(names))
	for i, name := range names {
		info := infos[i]
		raw := data[info.DataOffsets[0]:info.DataOffsets[1]]
		t := Tensor{Name: name, Shape: make([]int, len(info.Shape)), Data: make([]float32, len(raw)/4)}
		for j, d := range info.Shape {
			t.Shape[j] = int(d)
		}
		for j := range t.Data {
			t.Data[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		tensors[i] = t
	}
	slices.SortFunc(tensors, func(a, b Tensor) int { return strings.Compare(a.Name, b.Name) })
	return tensors, metadata, nil
}

// parseHeader reads the header object key by key, so duplicate names are
// caught, and checks each tensor entry on its own.
func parseHeader(header []byte) (names []string, infos []tensorInfo, metadata map[string]string, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: safetensors header: "+format, append([]any{ErrCorrupt}, args...)...)
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	if _, err := dec.Token(); err != nil {
		return nil, nil, nil, bad("%v", err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, nil, bad("%v", err)
		}
		name := tok.(string) // object keys are always strings
		if seen[name] {
			return nil, nil, nil, bad("key %q appears twice", name)
		}
		seen[name] = true
		if name == metadataKey {
			if err := dec.Decode(&metadata); err != nil {
				return nil, nil, nil, bad("__metadata__ is not an object of strings: %v", err)
			}
			continue
		}
		var info tensorInfo
		if err := dec.Decode(&info); err != nil {
			return nil, nil, nil, bad("tensor %q: %v", name, err)
		}
		if err := checkInfo(name, info); err != nil {
			return nil, nil, nil, err
		}
		names = append(names, name)
		infos = append(infos, info)
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, nil, bad("%v", err)
	}
	if rest := header[dec.InputOffset():]; len(bytes.TrimSpace(rest)) != 0 {
		return nil, nil, nil, bad("unexpected bytes after the JSON object")
	}
	return names, infos, metadata, nil
}

// checkInfo validates one tensor entry on its own: dtype, offsets and shape.
func checkInfo(name string, info tensorInfo) error {
	if info.Dtype != dtypeF32 {
		return fmt.Errorf("%w: tensor %q has dtype %q; ringtrain reads only F32 (convert it to float32 before saving)",
			ErrUnsupported, name, info.Dtype)
	}
	if len(info.DataOffsets) != 2 || info.DataOffsets[0] < 0 || info.DataOffsets[1] < info.DataOffsets[0] {
		return fmt.Errorf("%w: tensor %q has data_offsets %v, want [begin, end] with 0 <= begin <= end",
			ErrCorrupt, name, info.DataOffsets)
	}
	elems := int64(1)
	for _, d := range info.Shape {
		if d < 0 || (d > 0 && elems > math.MaxInt64/4/d) {
			return fmt.Errorf("%w: tensor %q has impossible shape %v", ErrCorrupt, name, info.Shape)
		}
		elems *= d
	}
	if size := info.DataOffsets[1] - info.DataOffsets[0]; size != 4*elems {
		return fmt.Errorf("%w: tensor %q of shape %v needs %d bytes of F32 but data_offsets %v span %d",
			ErrCorrupt, name, info.Shape, 4*elems, info.DataOffsets, size)
	}
	return nil
}
