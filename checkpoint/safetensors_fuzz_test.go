package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"slices"
	"testing"
)

// fuzzAllocBound is the most a parse of n input bytes may allocate: a small
// multiple of the input plus a constant for buffers and bookkeeping. A length
// field that makes the reader allocate what the header claims, rather than
// what the file holds, fails it.
func fuzzAllocBound(n int) uint64 { return 64*uint64(n) + 1<<20 }

// allocated returns the bytes f allocates (all goroutines; the fuzz worker
// runs one input at a time).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// safetensorsSeeds are valid files from WriteSafetensors and hand-made edge
// cases: each rejection a reader must make, and header lengths that lie.
func safetensorsSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	write := func(tensors []Tensor, meta map[string]string) []byte {
		var b bytes.Buffer
		if err := WriteSafetensors(&b, tensors, meta); err != nil {
			tb.Fatal(err)
		}
		return b.Bytes()
	}
	raw := func(header string, data []byte) []byte {
		b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
		return append(append(b, header...), data...)
	}
	lying := func(n uint64) []byte {
		return binary.LittleEndian.AppendUint64(nil, n)
	}
	return [][]byte{
		write(nil, nil),
		write([]Tensor{{Name: "s", Data: []float32{float32(math.NaN())}}}, map[string]string{"format": "pt"}),
		write([]Tensor{
			{Name: "layers.0.weight", Shape: []int{2, 3}, Data: []float32{1, -2, 3, float32(math.Inf(1)), 0, 1e-40}},
			{Name: "layers.0.bias", Shape: []int{3}, Data: []float32{0.5, 0, -0.5}},
			{Name: "empty", Shape: []int{0, 4}, Data: []float32{}},
		}, nil),
		raw(`{"__metadata__":{},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, make([]byte, 4)),
		raw(`{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}`, make([]byte, 2)),
		raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)),
		raw(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}`, nil),
		raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)),
		raw(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x`, make([]byte, 4)),
		raw(`{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)),
		lying(math.MaxUint64),
		append(lying(99_999_999), '{'),
		{},
	}
}

// FuzzReadSafetensors checks that ReadSafetensors returns an error (wrapping
// ErrCorrupt or ErrUnsupported) or tensors whose data fills their shapes,
// allocates in proportion to its input whatever the header claims, and
// that what it reads writes back and reads again unchanged.
func FuzzReadSafetensors(f *testing.F) {
	for _, seed := range safetensorsSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var tensors []Tensor
		var meta map[string]string
		var err error
		if n := allocated(func() { tensors, meta, err = ReadSafetensors(bytes.NewReader(b)) }); n > fuzzAllocBound(len(b)) {
			t.Fatalf("reading %d bytes allocated %d bytes (bound %d)", len(b), n, fuzzAllocBound(len(b)))
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error wraps neither ErrCorrupt nor ErrUnsupported: %v", err)
			}
			if tensors != nil || meta != nil {
				t.Fatalf("error %v came with a result", err)
			}
			return
		}
		dataBytes := 0
		emptyName := false
		for i, tn := range tensors {
			if i > 0 && tensors[i-1].Name >= tn.Name {
				t.Fatalf("tensors %q, %q are not in strictly increasing name order", tensors[i-1].Name, tn.Name)
			}
			if n := numel(tn.Shape, math.MaxInt/4); n != len(tn.Data) {
				t.Fatalf("tensor %q has shape %v (%d elements) but %d values", tn.Name, tn.Shape, n, len(tn.Data))
			}
			dataBytes += 4 * len(tn.Data)
			emptyName = emptyName || tn.Name == ""
		}
		if dataBytes > len(b)-8 {
			t.Fatalf("%d bytes of tensor data from a %d-byte file", dataBytes, len(b))
		}
		if emptyName {
			return // the reader accepts an empty tensor name; the writer refuses one
		}

		var w1 bytes.Buffer
		if err := WriteSafetensors(&w1, tensors, meta); err != nil {
			t.Fatalf("what was read does not write back: %v", err)
		}
		tensors2, meta2, err := ReadSafetensors(bytes.NewReader(w1.Bytes()))
		if err != nil {
			t.Fatalf("what was written does not read back: %v", err)
		}
		if len(tensors2) != len(tensors) {
			t.Fatalf("round trip: %d tensors, want %d", len(tensors2), len(tensors))
		}
		for i, want := range tensors {
			got := tensors2[i]
			if got.Name != want.Name || !slices.Equal(got.Shape, want.Shape) || !sameBits(got.Data, want.Data) {
				t.Fatalf("round trip: tensor %d is %q %v, want %q %v", i, got.Name, got.Shape, want.Name, want.Shape)
			}
		}
		if len(meta2) != len(meta) {
			t.Fatalf("round trip: metadata %v, want %v", meta2, meta)
		}
		for k, v := range meta {
			if meta2[k] != v {
				t.Fatalf("round trip: metadata[%q] = %q, want %q", k, meta2[k], v)
			}
		}
		var w2 bytes.Buffer
		if err := WriteSafetensors(&w2, tensors2, meta2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w1.Bytes(), w2.Bytes()) {
			t.Fatalf("write(read(write(x))) differs from write(x)")
		}
	})
}

// sameBits compares float32s bit for bit, so NaN payloads count.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
