package allreduce

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	ringtrainpb "github.com/ringtrain/ringtrain/proto"
)

func TestChunkCodecMatchesProto(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []*ringtrainpb.Chunk{
		{},
		{RunId: "run", Generation: 3, Seq: 7, Chunk: 2, Kind: ringtrainpb.Kind_KIND_DATA, FromRank: 1, ToRank: 2, Payload: []byte{1, 2, 3, 4}},
		{Kind: ringtrainpb.Kind_KIND_ABORT, SuspectRank: -1, Reason: "boom"},
		{Kind: ringtrainpb.Kind_KIND_ABORT, SuspectRank: 5, Reason: string(make([]byte, 300)), RunId: string(make([]byte, 100))},
	}
	for range 20 {
		p := make([]byte, rng.IntN(100000))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		cases = append(cases, &ringtrainpb.Chunk{RunId: "r", Generation: rng.Uint64(), Seq: rng.Uint64() >> rng.IntN(64),
			Chunk: rng.Uint32(), Kind: ringtrainpb.Kind_KIND_DATA, FromRank: rng.Uint32N(9), ToRank: rng.Uint32N(9), Payload: p})
	}
	c := chunkCodec{}
	for i, want := range cases {
		ref, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Materialize(); !bytes.Equal(got, ref) {
			t.Fatalf("case %d: codec bytes differ from proto.Marshal", i)
		}
		out.Free()
		// Decode from the reference bytes split at awkward places.
		for _, split := range []int{1, 3, 7, 16384} {
			var bs mem.BufferSlice
			for off := 0; off < len(ref); off += split {
				bs = append(bs, mem.SliceBuffer(ref[off:min(len(ref), off+split)]))
			}
			got := &ringtrainpb.Chunk{RunId: "stale", Payload: []byte("stale")}
			if err := c.Unmarshal(bs, got); err != nil {
				t.Fatalf("case %d split %d: %v", i, split, err)
			}
			if !proto.Equal(got, want) && !(len(got.Payload) == 0 && len(want.Payload) == 0 && equalButPayload(got, want)) {
				t.Fatalf("case %d split %d: decoded %v, want %v", i, split, got, want)
			}
		}
	}
	// Other messages fall back to the proto codec.
	hello := &ringtrainpb.Chunk{RunId: "x"}
	var anyMsg proto.Message = hello
	if _, err := c.Marshal(anyMsg); err != nil {
		t.Fatal(err)
	}
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a})}, &ringtrainpb.Chunk{}); err == nil {
		t.Errorf("truncated chunk decoded without error")
	}
}

func equalButPayload(a, b *ringtrainpb.Chunk) bool {
	a2, b2 := proto.Clone(a).(*ringtrainpb.Chunk), proto.Clone(b).(*ringtrainpb.Chunk)
	a2.Payload, b2.Payload = nil, nil
	return proto.Equal(a2, b2)
}

func TestFloatsLE(t *testing.T) {
	src := []float32{1, -2.5, 3e10, 0}
	b := wireBytes(src)
	dst := []float32{1, 1, 1, 1}
	addLE(dst, b)
	if dst[0] != 2 || dst[1] != -1.5 || dst[2] != 3e10+1 || dst[3] != 1 {
		t.Errorf("addLE = %v", dst)
	}
	// Unaligned source takes the portable path.
	un := make([]byte, len(b)+1)[1:]
	copy(un, b)
	dst2 := make([]float32, 4)
	addLE(dst2, un)
	copyLE(dst, un)
	for i := range src {
		if dst2[i] != src[i] || dst[i] != src[i] {
			t.Fatalf("unaligned: %v %v, want %v", dst2, dst, src)
		}
	}
}

func TestAddFloatsMatchesScalar(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 3, 4, 5, 15, 16, 17, 63, 64, 65, 1000, 4099} {
		d := make([]float32, n)
		s := make([]float32, n+1)
		want := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64())
			s[i] = float32(rng.NormFloat64())
			want[i] = d[i] + s[i]
		}
		addFloats(d, s)
		for i := range d {
			if d[i] != want[i] {
				t.Fatalf("n=%d [%d] = %v, want %v", n, i, d[i], want[i])
			}
		}
		// Through the byte path, at an odd offset.
		raw := make([]byte, 4*n+1)[1:]
		copy(raw, wireBytes(s[:n]))
		d2 := make([]float32, n)
		addLE(d2, raw)
		for i := range d2 {
			if d2[i] != s[i] {
				t.Fatalf("n=%d unaligned [%d] = %v, want %v", n, i, d2[i], s[i])
			}
		}
	}
}
