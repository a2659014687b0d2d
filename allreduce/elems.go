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
	// size is the bytes of one element on the wire.
	size() int
	// wire returns the elements of s as little-endian wire bytes. On
	// little-endian hosts it aliases the buffer (zero-copy send).
	wire(s span) []byte
	// apply adds (add) or stores the little-endian elements in src into
	// s; len(src) == size()*s.len. src may lie at any alignment.
	apply(s span, src []byte, add bool)
	// applyOne adds (add) or stores element i from its little-endian bits
	// (the low size() bytes of le). By value: a stack carry must not escape.
	applyOne(i int, le uint64, add bool)
}

// maxElemSize bounds elems.size (the carry of applyParts).
const maxElemSize = 8

var (
	_ elems = float32s(nil)
	_ elems = int64s(nil)
)

// float32s is a []float32 buffer: summed with float32 addition.
type float32s []float32

func (f float32s) count() int         { return len(f) }
func (float32s) size() int            { return 4 }
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
func (int64s) size() int            { return 8 }
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
// parts into s of v; the parts hold exactly v.size()*s.len bytes, split
// anywhere (a transport's receive buffers), so an element may straddle two
// or more parts: its bytes are gathered in a carry and applied alone.
func applyParts(v elems, s span, parts [][]byte, add bool) {
	size := v.size()
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
