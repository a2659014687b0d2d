package allreduce

import (
	"bytes"
	"testing"
	"unicode/utf8"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	ringtrainpb "github.com/ringtrain/ringtrain/proto"
)

// splitFuzz cuts b into buffers of size step (the last shorter), as gRPC
// hands a message over in several receive buffers.
func splitFuzz(b []byte, step int) mem.BufferSlice {
	var bs mem.BufferSlice
	for off := 0; off < len(b); off += step {
		bs = append(bs, mem.SliceBuffer(b[off:min(len(b), off+step)]))
	}
	return bs
}

// FuzzChunkCodec fuzzes the bytes of a Chunk message, split over receive
// buffers at a fuzzed size, through both decoders: the codec's Unmarshal
// (payload copied) and the server's inChunk (large payloads left in place).
// Both must fail or both succeed with the same fields, without reading
// past the input; a decoded chunk must re-encode to proto.Marshal's bytes
// and decode back to itself; and wherever proto.Unmarshal accepts the
// bytes as a well-typed Chunk, the codec must agree with it.
func FuzzChunkCodec(f *testing.F) {
	big := bytes.Repeat([]byte{1, 2, 3, 4}, zeroCopyMin/4+1)
	for _, c := range []*ringtrainpb.Chunk{
		{},
		{RunId: "run", Generation: 3, Seq: 7, Chunk: 2, Kind: ringtrainpb.Kind_KIND_DATA, FromRank: 1, ToRank: 2, Payload: []byte{1, 2, 3, 4}},
		{RunId: "run", Generation: 1 << 63, Seq: 1, Kind: ringtrainpb.Kind_KIND_DATA, Payload: big},
		{Kind: ringtrainpb.Kind_KIND_ABORT, SuspectRank: -1, Reason: "boom"},
	} {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(0))
		f.Add(b, uint16(3))
		if len(b) > 0 {
			f.Add(b[:len(b)-1], uint16(1)) // truncated
		}
	}
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	f.Add(append(tag(8, protowire.BytesType), 0xff, 0xff, 0xff, 0xff, 0x0f), uint16(0)) // length past the end
	f.Add(append(tag(1, protowire.BytesType), 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01), uint16(0))
	f.Add(append(tag(99, protowire.Fixed64Type), 1, 2, 3, 4, 5, 6, 7, 8), uint16(2)) // unknown field
	f.Add(append(tag(3, protowire.StartGroupType), tag(3, protowire.EndGroupType)...), uint16(0))
	f.Add(append(append(tag(8, protowire.BytesType), 1, 9), append(tag(8, protowire.BytesType), 1, 8)...), uint16(1)) // payload twice

	codec := chunkCodec{}
	f.Fuzz(func(t *testing.T, b []byte, step uint16) {
		bs := splitFuzz(b, max(1, int(step)))

		got := &ringtrainpb.Chunk{RunId: "stale", Payload: []byte("stale")}
		err := codec.Unmarshal(bs, got)
		var in inChunk
		in.RunId = "stale"
		inErr := in.unmarshal(bs)
		if (err == nil) != (inErr == nil) {
			t.Fatalf("Unmarshal error %v but inChunk error %v", err, inErr)
		}
		if err != nil {
			return
		}
		var m Message
		in.take(&m)
		if m.Payload != nil && m.Parts != nil {
			t.Logf("inChunk kept both a copied payload and one in place (payload field repeated)")
		} else {
			inPayload := m.Payload
			if m.Parts != nil {
				inPayload = bytes.Join(m.Parts, nil)
			}
			if !bytes.Equal(inPayload, got.Payload) {
				t.Fatalf("inChunk payload (%d bytes) differs from Unmarshal's (%d bytes)", len(inPayload), len(got.Payload))
			}
		}
		m.Free()
		if len(got.Payload) > len(b) {
			t.Fatalf("%d-byte payload from a %d-byte message", len(got.Payload), len(b))
		}
		in.Payload = got.Payload
		if !proto.Equal(&in.Chunk, got) {
			t.Fatalf("inChunk decoded %v, Unmarshal %v", &in.Chunk, got)
		}

		// Re-encode: the same bytes as proto.Marshal, and back to the same chunk.
		out, err := codec.Marshal(got)
		if err != nil {
			t.Fatalf("a decoded chunk does not encode: %v", err)
		}
		enc := out.Materialize()
		out.Free()
		// The codec, unlike proto, does not check that strings are UTF-8.
		if utf8.ValidString(got.RunId) && utf8.ValidString(got.Reason) {
			ref, err := proto.MarshalOptions{Deterministic: true}.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, ref) {
				t.Fatalf("codec encoding differs from proto.Marshal")
			}
		}
		again := &ringtrainpb.Chunk{}
		if err := codec.Unmarshal(splitFuzz(enc, max(1, int(step))), again); err != nil {
			t.Fatalf("a re-encoded chunk does not decode: %v", err)
		}
		if !chunksEqual(again, got) {
			t.Fatalf("round trip: %v, want %v", again, got)
		}

		// Where proto accepts the bytes as a Chunk, the codec reads the same
		// fields (proto keeps fields it cannot type as unknown ones).
		std := &ringtrainpb.Chunk{}
		if proto.Unmarshal(b, std) != nil {
			return
		}
		std.ProtoReflect().SetUnknown(nil)
		if !chunksEqual(got, std) {
			t.Fatalf("codec decoded %v, proto.Unmarshal %v", got, std)
		}
	})
}

// chunksEqual is proto.Equal, with nil and empty payloads equal.
func chunksEqual(a, b *ringtrainpb.Chunk) bool {
	return bytes.Equal(a.Payload, b.Payload) && equalButPayload(a, b)
}
