package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestSafetensorsKnownBytes pins the encoding of one tiny tensor, built by
// hand from the format description.
func TestSafetensorsKnownBytes(t *testing.T) {
	header := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}` + "  " // 54 bytes + 2 spaces = 56
	want := []byte{56, 0, 0, 0, 0, 0, 0, 0}
	want = append(want, header...)
	want = append(want, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0) // 1.0, -2.0 little-endian
	var b bytes.Buffer
	if err := WriteSafetensors(&b, []Tensor{{Name: "a", Shape: []int{2}, Data: []float32{1, -2}}}, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("got\n%q\nwant\n%q", b.Bytes(), want)
	}

	// With metadata: __metadata__ comes first; 79 bytes pad to 80.
	header = `{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}} `
	want = append([]byte{80, 0, 0, 0, 0, 0, 0, 0}, header...)
	want = append(want, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0)
	b.Reset()
	if err := WriteSafetensors(&b, []Tensor{{Name: "a", Shape: []int{2}, Data: []float32{1, -2}}}, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("got\n%q\nwant\n%q", b.Bytes(), want)
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	in := []Tensor{
		{Name: "z.last", Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, float32(math.Inf(-1))}},
		{Name: "layers.0.bias", Shape: []int{3}, Data: []float32{-0.5, 0, float32(math.SmallestNonzeroFloat32)}},
		{Name: "empty", Shape: []int{0, 4}, Data: []float32{}},
		{Name: "scalar", Shape: []int{}, Data: []float32{42}},
		{Name: "名前<&>", Shape: []int{1}, Data: []float32{7}},
	}
	meta := map[string]string{"format": "pt", "note": "ringtrain"}
	var b bytes.Buffer
	if err := WriteSafetensors(&b, in, meta); err != nil {
		t.Fatal(err)
	}
	if hl := binary.LittleEndian.Uint64(b.Bytes()); hl%8 != 0 {
		t.Fatalf("header length %d is not a multiple of 8", hl)
	}
	out, gotMeta, err := ReadSafetensors(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotMeta, meta) {
		t.Fatalf("metadata = %v, want %v", gotMeta, meta)
	}
	wantOrder := []string{"empty", "layers.0.bias", "scalar", "z.last", "名前<&>"}
	if len(out) != len(wantOrder) {
		t.Fatalf("got %d tensors, want %d", len(out), len(wantOrder))
	}
	byName := map[string]Tensor{}
	for _, tt := range in {
		byName[tt.Name] = tt
	}
	for i, got := range out {
		if got.Name != wantOrder[i] {
			t.Fatalf("tensor %d is %q, want %q", i, got.Name, wantOrder[i])
		}
		want := byName[got.Name]
		if !reflect.DeepEqual(got.Shape, want.Shape) || !reflect.DeepEqual(got.Data, want.Data) {
			t.Fatalf("tensor %q = %v %v, want %v %v", got.Name, got.Shape, got.Data, want.Shape, want.Data)
		}
	}

	// The file variant, and no metadata at all.
	path := filepath.Join(t.TempDir(), "m.safetensors")
	b.Reset()
	if err := WriteSafetensors(&b, in[:1], nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, gotMeta, err = ReadSafetensorsFile(path)
	if err != nil || gotMeta != nil || len(out) != 1 || out[0].Data[5] != float32(math.Inf(-1)) {
		t.Fatalf("ReadSafetensorsFile = %v, %v, %v", out, gotMeta, err)
	}
}

func TestWriteSafetensorsInvalid(t *testing.T) {
	for name, ts := range map[string][]Tensor{
		"shape mismatch": {{Name: "a", Shape: []int{2, 2}, Data: []float32{1, 2, 3}}},
		"duplicate":      {{Name: "a", Shape: []int{1}, Data: []float32{1}}, {Name: "a", Shape: []int{1}, Data: []float32{1}}},
		"reserved":       {{Name: "__metadata__", Shape: []int{1}, Data: []float32{1}}},
		"empty name":     {{Name: "", Shape: []int{1}, Data: []float32{1}}},
		"negative dim":   {{Name: "a", Shape: []int{-1}, Data: nil}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := WriteSafetensors(&bytes.Buffer{}, ts, nil); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// stFile assembles a safetensors file from a header and data, padding the
// header as the format requires.
func stFile(header string, data []byte) []byte {
	for len(header)%8 != 0 {
		header += " "
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func TestReadSafetensorsRejects(t *testing.T) {
	var good bytes.Buffer
	if err := WriteSafetensors(&good, []Tensor{{Name: "w", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}}}, nil); err != nil {
		t.Fatal(err)
	}
	eight := make([]byte, 8)
	sixteen := make([]byte, 16)
	tests := []struct {
		name    string
		data    []byte
		wantErr error
		want    string
	}{
		{"empty", nil, ErrCorrupt, "shorter than its 8-byte header length"},
		{"truncated data", good.Bytes()[:good.Len()-1], ErrCorrupt, "past the 15 data bytes"},
		{"truncated header", good.Bytes()[:20], ErrCorrupt, "header length is 64 but the file has 12 bytes"},
		{"huge header length", binary.LittleEndian.AppendUint64(nil, 1<<62), ErrCorrupt, "header length"},
		{"trailing data", append(bytes.Clone(good.Bytes()), 0, 0, 0, 0), ErrCorrupt, "cover 16 data bytes but the file has 20"},
		{"not json", stFile(`{"w":`, nil), ErrCorrupt, "safetensors header"},
		{"not an object", stFile(`[1,2]`, nil), ErrCorrupt, "does not start with '{'"},
		{"junk after object", stFile(`{}x`, nil), ErrCorrupt, "after the JSON object"},
		{"offsets out of bounds", stFile(`{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}`, eight), ErrCorrupt, "past the 8 data bytes"},
		{"offsets reversed", stFile(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, eight), ErrCorrupt, "0 <= begin <= end"},
		{"offsets count", stFile(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[8]}}`, eight), ErrCorrupt, "data_offsets [8]"},
		{"gap", stFile(`{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}`, sixteen), ErrCorrupt, `"w" data starts at byte 8, want 0`},
		{"overlap", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, sixteen), ErrCorrupt, "contiguous"},
		{"shape mismatch", stFile(`{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}`, eight), ErrCorrupt, "needs 12 bytes"},
		{"negative dim", stFile(`{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, eight), ErrCorrupt, "impossible shape"},
		{"duplicate", stFile(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, eight), ErrCorrupt, `"w" appears twice`},
		{"bad metadata", stFile(`{"__metadata__":{"k":1}}`, nil), ErrCorrupt, "__metadata__"},
		{"wrong dtype", stFile(`{"w":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}}`, eight), ErrUnsupported, `"w" has dtype "F16"; ringtrain reads only F32`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadSafetensors(bytes.NewReader(tt.data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestReadSafetensorsEmptyFile(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSafetensors(&b, nil, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Bytes(), stFile("{}", nil)) {
		t.Fatalf("empty file = %q", b.Bytes())
	}
	ts, meta, err := ReadSafetensors(&b)
	if err != nil || len(ts) != 0 || meta != nil {
		t.Fatalf("got %v %v %v", ts, meta, err)
	}
}
