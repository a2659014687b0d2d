package allreduce

import (
	"encoding/binary"
	"math"
)

// elems is a collective's buffer as the ring sees it: a count of elements of
// one kind, their size on the wire, and how a span of them is sent, added
// and copied. The ring plans, checks and moves whole elements (spans count
// elements, never bytes), so an element is never split between two messages.
// Each method handles a whole part, so the ring dispatches once per part
// and the loops over elements stay direct calls (for float32, assembly).
//
// Implementations: float32s (float32 add) and int64s (wrap-around int64 add).
type elems interface {
	// count is the number of elements.
	count() int
	// sizeOf is the bytes on the wire of one element of s (a span never
	// mixes elements of different sizes).
	sizeOf(s span) int
	// wire returns the elements of s as little-endian wire bytes. On
	// little-endian hosts it aliases the buffer (zero-copy send).
	wire(s span) []byte
	// apply adds (add) or stores the little-endian elements in src into
	// s; len(src) == size()*s.len. src may lie at any alignment.
	apply(s span, src []byte, add bool)
	// applyOne adds (add) or stores element i from its little-endian bits
	// (the low size() bytes of le). By value: a stack carry must not escape.
	applyOne(i int, le uint64, add bool)
	// finish is told that the elements of s hold their final sums, before
	// any send that depends on them (fixedFloats converts them).
	finish(s span)
}

// maxElemSize bounds elems.sizeOf (the carry of applyParts).
const maxElemSize = 8

var (
	_ elems = float32s(nil)
	_ elems = int64s(nil)
	_ elems = fixedFloats{}
)

// float32s is a []float32 buffer: summed with float32 addition.
type float32s []float32

func (f float32s) count() int         { return len(f) }
func (float32s) sizeOf(span) int      { return 4 }
func (float32s) finish(span)          {}
func (f float32s) wire(s span) []byte { return wireBytes(f[s.off : s.off+s.len]) }

func (f float32s) apply(s span, src []byte, add bool) {
	if add {
		addLE(f[s.off:s.off+s.len], src)
	} else {
		copyLE(f[s.off:s.off+s.len], src)
	}
}

func (f float32s) applyOne(i int, le uint64, add bool) {
	v := math.Float32frombits(uint32(le))
	if add {
		f[i] += v
	} else {
		f[i] = v
	}
}

// int64s is a []int64 buffer: summed with wrap-around two's-complement
// addition, which is exact and associative, so the sum's bits depend neither
// on the ring order nor on the chunking.
type int64s []int64

func (v int64s) count() int         { return len(v) }
func (int64s) sizeOf(span) int      { return 8 }
func (int64s) finish(span)          {}
func (v int64s) wire(s span) []byte { return wireBytesInt64(v[s.off : s.off+s.len]) }

func (v int64s) apply(s span, src []byte, add bool) {
	if add {
		addLE64(v[s.off:s.off+s.len], src)
	} else {
		copyLE64(v[s.off:s.off+s.len], src)
	}
}

func (v int64s) applyOne(i int, le uint64, add bool) {
	if add {
		v[i] += int64(le)
	} else {
		v[i] = int64(le)
	}
}

// applyParts adds (add) or stores the little-endian elements spread over
// parts into s of v; the parts hold exactly v.sizeOf(s)*s.len bytes, split
// anywhere (a transport's receive buffers), so an element may straddle two
// or more parts: its bytes are gathered in a carry and applied alone.
func applyParts(v elems, s span, parts [][]byte, add bool) {
	size := v.sizeOf(s)
	var carry [maxElemSize]byte // bytes past size stay zero
	nc := 0
	off := s.off
	for _, p := range parts {
		if nc > 0 {
			k := copy(carry[nc:size], p)
			nc += k
			p = p[k:]
			if nc < size {
				continue
			}
			v.applyOne(off, binary.LittleEndian.Uint64(carry[:]), add)
			off++
			nc = 0
		}
		if n := len(p) / size; n > 0 {
			v.apply(span{off: off, len: n}, p[:n*size], add)
			off += n
			p = p[n*size:]
		}
		nc = copy(carry[:size], p)
	}
}

// fixedFloats is the buffer of AllReduceInt64ToFloat32: elements [0, l) are
// the integers, summed by the reduce-scatter; [l, 2l) their float32 images,
// which each rank makes of the chunk it completes (finish calls convert)
// and the all-gather copies around.
type fixedFloats struct {
	acc     int64s
	out     float32s
	convert func(lo, hi int)
}

func (f fixedFloats) count() int { return 2 * len(f.acc) }

func (f fixedFloats) sizeOf(s span) int {
	if s.off >= len(f.acc) {
		return 4
	}
	return 8
}

func (f fixedFloats) wire(s span) []byte {
	if l := len(f.acc); s.off >= l {
		return f.out.wire(span{s.off - l, s.len})
	}
	return f.acc.wire(s)
}

func (f fixedFloats) apply(s span, src []byte, add bool) {
	if l := len(f.acc); s.off >= l {
		f.out.apply(span{s.off - l, s.len}, src, add)
		return
	}
	f.acc.apply(s, src, add)
}

func (f fixedFloats) applyOne(i int, le uint64, add bool) {
	if l := len(f.acc); i >= l {
		f.out.applyOne(i-l, le, add)
		return
	}
	f.acc.applyOne(i, le, add)
}

func (f fixedFloats) finish(s span) {
	if s.len > 0 {
		f.convert(s.off, s.off+s.len)
	}
}
