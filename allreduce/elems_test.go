package allreduce

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"
)

// randomInt64s returns n values over the whole int64 range, the extremes
// first (so sums with them wrap around).
func randomInt64s(rng *rand.Rand, n int) []int64 {
	v := make([]int64, n)
	for i := range v {
		v[i] = int64(rng.Uint64())
	}
	copy(v, []int64{math.MaxInt64, math.MinInt64, -1, 1})
	return v
}

// randomSplit copies b to a random (mostly misaligned) offset and cuts it at
// random points, duplicates giving empty parts, as a transport's receive
// buffers may. It reports whether a cut falls inside an element of size.
func randomSplit(rng *rand.Rand, b []byte, size int) (parts [][]byte, straddles bool) {
	raw := make([]byte, len(b)+8)[rng.IntN(8):][:len(b)]
	copy(raw, b)
	cuts := make([]int, rng.IntN(min(len(b), 40)+1))
	for i := range cuts {
		cuts[i] = rng.IntN(len(b) + 1)
	}
	slices.Sort(cuts)
	prev := 0
	for _, c := range cuts {
		parts = append(parts, raw[prev:c])
		straddles = straddles || c%size != 0
		prev = c
	}
	return append(parts, raw[prev:]), straddles
}

// splitEvery cuts b into parts of k bytes (the last shorter).
func splitEvery(b []byte, k int) [][]byte {
	var parts [][]byte
	for off := 0; off < len(b); off += k {
		parts = append(parts, b[off:min(len(b), off+k)])
	}
	return parts
}

// TestApplyPartsInt64 applies int64 payloads split anywhere, into a span in
// the middle of a larger buffer, and compares with a naive wrap-around sum.
func TestApplyPartsInt64(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	straddled := 0
	for _, n := range []int{0, 1, 2, 3, 7, 64, 1000, 4099} {
		for trial := range 30 {
			src := randomInt64s(rng, n)
			wire := slices.Clone(wireBytesInt64(src))
			var parts [][]byte
			switch trial {
			case 0:
				parts = splitEvery(wire, 1) // every element over 8 parts
			case 1:
				parts = splitEvery(wire, 3)
			case 2:
				parts = splitEvery(wire, 16381) // a gRPC frame less its header, give or take
			default:
				var s bool
				parts, s = randomSplit(rng, wire, 8)
				if s {
					straddled++
				}
			}
			const pad = 5
			base := randomInt64s(rng, n+2*pad)
			for _, add := range []bool{true, false} {
				got := slices.Clone(base)
				applyParts(int64s(got), span{off: pad, len: n}, parts, add)
				for i, g := range got {
					want := base[i]
					if i >= pad && i < pad+n {
						want = src[i-pad]
						if add {
							want += base[i] // wraps around
						}
					}
					if g != want {
						t.Fatalf("n=%d trial %d add=%v: [%d] = %d, want %d (parts %d)", n, trial, add, i, g, want, len(parts))
					}
				}
			}
		}
	}
	if straddled == 0 {
		t.Fatal("no random split cut an int64: the carry was not exercised")
	}
}

// TestApplyPartsFloat32 is the same for float32, compared bit for bit.
func TestApplyPartsFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{0, 1, 3, 17, 1000, 4099} {
		for trial := range 20 {
			src := make([]float32, n)
			base := make([]float32, n)
			for i := range src {
				src[i] = float32(rng.NormFloat64() * 1e3)
				base[i] = float32(rng.NormFloat64())
			}
			parts, _ := randomSplit(rng, slices.Clone(wireBytes(src)), 4)
			if trial == 0 {
				parts = splitEvery(slices.Clone(wireBytes(src)), 1)
			}
			for _, add := range []bool{true, false} {
				got := slices.Clone(base)
				applyParts(float32s(got), span{len: n}, parts, add)
				for i := range got {
					want := src[i]
					if add {
						want = base[i] + src[i]
					}
					if math.Float32bits(got[i]) != math.Float32bits(want) {
						t.Fatalf("n=%d trial %d add=%v: [%d] = %v, want %v", n, trial, add, i, got[i], want)
					}
				}
			}
		}
	}
}

func TestInt64LE(t *testing.T) {
	src := []int64{1, -2, math.MaxInt64, math.MinInt64, 0}
	b := wireBytesInt64(src)
	if nativeLittleEndian && unsafe.Pointer(&b[0]) != unsafe.Pointer(&src[0]) {
		t.Errorf("wireBytesInt64 copied on a little-endian host; want the buffer's own bytes")
	}
	if b[16] != 0xff || b[23] != 0x7f || b[24] != 0 || b[31] != 0x80 {
		t.Errorf("wire bytes of MaxInt64, MinInt64 = % x, want little-endian", b[16:32])
	}
	dst := []int64{1, 1, 1, -1, 7}
	addLE64(dst, b)
	if want := []int64{2, -1, math.MinInt64, math.MaxInt64, 7}; !slices.Equal(dst, want) {
		t.Errorf("addLE64 = %v, want %v (wrapping around)", dst, want)
	}
	// Unaligned sources, every offset.
	for off := 1; off < 8; off++ {
		un := make([]byte, len(b)+off)[off:]
		copy(un, b)
		d1, d2 := make([]int64, len(src)), make([]int64, len(src))
		addLE64(d1, un)
		copyLE64(d2, un)
		if !slices.Equal(d1, src) || !slices.Equal(d2, src) {
			t.Fatalf("offset %d: %v %v, want %v", off, d1, d2, src)
		}
	}
	if wireBytesInt64(nil) != nil {
		t.Errorf("wireBytesInt64(nil) is not nil")
	}
}

func TestAddInt64sMatchesScalar(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{0, 1, 3, 4, 5, 7, 8, 9, 63, 1000} {
		d := randomInt64s(rng, n)
		s := randomInt64s(rng, n+1)
		want := make([]int64, n)
		for i := range want {
			want[i] = d[i] + s[i]
		}
		addInt64s(d, s)
		if !slices.Equal(d, want) {
			t.Fatalf("n=%d: addInt64s differs from the scalar sum", n)
		}
	}
}

// TestElemsWireZeroCopy: on little-endian hosts both kinds send a span of the
// caller's buffer as its own bytes.
func TestElemsWireZeroCopy(t *testing.T) {
	if !nativeLittleEndian {
		t.Skip("big-endian host: payloads are encoded copies")
	}
	f := make(float32s, 10)
	v := make(int64s, 10)
	s := span{off: 3, len: 4}
	if b := f.wire(s); len(b) != 16 || unsafe.Pointer(&b[0]) != unsafe.Pointer(&f[3]) {
		t.Errorf("float32s.wire: %d bytes at %p, want 16 at %p", len(b), &b[0], &f[3])
	}
	if b := v.wire(s); len(b) != 32 || unsafe.Pointer(&b[0]) != unsafe.Pointer(&v[3]) {
		t.Errorf("int64s.wire: %d bytes at %p, want 32 at %p", len(b), &b[0], &v[3])
	}
}

// TestAllReducePlanWholeElements: for either element size, every part of a
// plan fits in ChunkBytes and the parts of each step tile the step's chunk.
func TestAllReducePlanWholeElements(t *testing.T) {
	for _, size := range []int{4, 8} {
		for _, chunkBytes := range []int{4096, 12340, DefaultChunkBytes} {
			for _, l := range []int{0, 1, 7, 100003} {
				for n := 2; n <= 5; n++ {
					for rank := range n {
						steps := Schedule(n, rank)
						p := allReducePlan(l, n, rank, chunkBytes/size)
						k := len(p.recvs) / len(steps)
						if len(p.sends) != len(p.recvs) || k*len(steps) != len(p.recvs) {
							t.Fatalf("size %d l=%d n=%d rank %d: %d sends, %d recvs over %d steps", size, l, n, rank, len(p.sends), len(p.recvs), len(steps))
						}
						for ti, st := range steps {
							for _, c := range []struct {
								items []span
								chunk int
							}{
								{spans(p.recvs[ti*k : (ti+1)*k]), st.RecvChunk},
								{sendSpans(p.sends[ti*k : (ti+1)*k]), st.SendChunk},
							} {
								seg := segment(l, n, c.chunk)
								next := seg.off
								for _, it := range c.items {
									if it.off != next || it.len*size > chunkBytes {
										t.Fatalf("size %d chunk %d l=%d n=%d rank %d step %d: part %+v (next %d)", size, chunkBytes, l, n, rank, ti, it, next)
									}
									next += it.len
								}
								if next != seg.off+seg.len {
									t.Fatalf("size %d l=%d n=%d rank %d step %d: parts end at %d, want %d", size, l, n, rank, ti, next, seg.off+seg.len)
								}
							}
						}
					}
				}
			}
		}
	}
}

func spans(items []recvItem) []span {
	s := make([]span, len(items))
	for i, it := range items {
		s[i] = it.span
	}
	return s
}

func sendSpans(items []sendItem) []span {
	s := make([]span, len(items))
	for i, it := range items {
		s[i] = it.span
	}
	return s
}
