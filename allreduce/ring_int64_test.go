package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// int64Lengths are the buffer lengths of the AllReduceInt64 tests.
var int64Lengths = []int{0, 1, 2, 3, 7, 1000, 100_003}

// int64Data returns contribution c's buffer of length l: seeded values over
// the whole int64 range, with MaxInt64 and MinInt64 first on every rank so
// that those sums wrap around.
func int64Data(l, c int) []int64 {
	return randomInt64s(rand.New(rand.NewPCG(uint64(l), uint64(c))), l)
}

// sumInt64 is the oracle: the naive serial sum, wrapping around as Go's
// int64 addition does.
func sumInt64(bufs [][]int64) []int64 {
	if len(bufs) == 0 {
		return nil
	}
	want := make([]int64, len(bufs[0]))
	for _, b := range bufs {
		for i, v := range b {
			want[i] += v
		}
	}
	return want
}

// allReduceInt64 runs AllReduceInt64 on every ring, rank r contributing
// data[r] (a copy), checks every rank's result against the oracle bit for
// bit, and returns rank 0's result.
func allReduceInt64(t *testing.T, rings []*Ring, data [][]int64) []int64 {
	t.Helper()
	bufs := make([][]int64, len(rings))
	for r := range rings {
		bufs[r] = slices.Clone(data[r])
	}
	errs := onAll(rings, func(rank int, r *Ring) error {
		return r.AllReduceInt64(context.Background(), bufs[rank])
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("n=%d l=%d: %v", len(rings), len(data[0]), err)
	}
	want := sumInt64(data)
	for r, b := range bufs {
		if i := firstDiffInt64(b, want); i >= 0 {
			t.Fatalf("n=%d l=%d rank %d: [%d] = %d, want %d", len(rings), len(want), r, i, b[i], want[i])
		}
	}
	return bufs[0]
}

// checkAllReduceInt64 sums int64Data(l, rank) over the ring.
func checkAllReduceInt64(t *testing.T, rings []*Ring, l int) []int64 {
	t.Helper()
	data := make([][]int64, len(rings))
	for r := range data {
		data[r] = int64Data(l, r)
	}
	return allReduceInt64(t, rings, data)
}

func firstDiffInt64(a, b []int64) int {
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestAllReduceInt64Mem(t *testing.T) {
	for n := 1; n <= 5; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			_, ts, _ := memCluster(t, n)
			rings := buildRings(t, ts, seq(n), 1, nil)
			for _, l := range int64Lengths {
				checkAllReduceInt64(t, rings, l)
			}
		})
	}
}

func TestAllReduceInt64GRPC(t *testing.T) {
	for n := 1; n <= 5; n++ {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			rings := buildRings(t, grpcCluster(t, n), seq(n), 1, nil)
			for _, l := range int64Lengths {
				checkAllReduceInt64(t, rings, l)
			}
		})
	}
}

// TestAllReduceInt64WrapsAround: the sum of n MaxInt64s is n·MaxInt64
// modulo 2⁶⁴, on every rank.
func TestAllReduceInt64WrapsAround(t *testing.T) {
	const n = 3
	_, ts, _ := memCluster(t, n)
	rings := buildRings(t, ts, seq(n), 1, nil)
	data := make([][]int64, n)
	for r := range data {
		data[r] = []int64{math.MaxInt64, math.MinInt64, -1, math.MaxInt64 - int64(r)}
	}
	got := allReduceInt64(t, rings, data)
	// Modulo 2⁶⁴: 3·(2⁶³−1) ≡ 2⁶³−3 = MaxInt64−2; 3·(−2⁶³) ≡ −2⁶³;
	// the last is 3·MaxInt64 − (0+1+2).
	want := []int64{math.MaxInt64 - 2, math.MinInt64, -3, math.MaxInt64 - 5}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestAllReduceInt64OrderAndChunking: the same contributions summed with
// different ChunkBytes (4 KiB; 12 340 bytes, not a multiple of 8; the
// default) and over different ring orders give bit-identical results, on
// both transports.
func TestAllReduceInt64OrderAndChunking(t *testing.T) {
	const n, l = 4, 100_003
	data := make([][]int64, n)
	for c := range data {
		data[c] = int64Data(l, c)
	}
	for _, tr := range []string{"mem", "grpc"} {
		t.Run(tr, func(t *testing.T) {
			var ts []Transport
			if tr == "mem" {
				_, ts, _ = memCluster(t, n)
			} else {
				ts = grpcCluster(t, n)
			}
			var first []int64
			for gen, c := range []struct {
				chunkBytes int
				order      []int // order[rank] is the contribution rank holds
			}{
				{minChunkBytes, []int{0, 1, 2, 3}},
				{12_340, []int{3, 1, 0, 2}},
				{DefaultChunkBytes, []int{2, 3, 1, 0}},
			} {
				rings := buildRings(t, ts, seq(n), uint64(gen+1), func(cfg *Config) { cfg.ChunkBytes = c.chunkBytes })
				perm := make([][]int64, n)
				for r, k := range c.order {
					perm[r] = data[k]
				}
				got := allReduceInt64(t, rings, perm)
				if first == nil {
					first = got
				} else if i := firstDiffInt64(got, first); i >= 0 {
					t.Fatalf("chunk %d order %v: [%d] = %d, differs from %d", c.chunkBytes, c.order, i, got[i], first[i])
				}
				for _, r := range rings {
					r.Close()
				}
			}
		})
	}
}

// partSpy records how the gRPC transport hands received payloads to the
// ring: in how many parts, and whether a part boundary cut an int64.
type partSpy struct {
	Transport
	parted, straddled atomic.Int32
}

func (s *partSpy) Listen(key SessionKey, h Handler) (func(), error) {
	return s.Transport.Listen(key, spyHandler{h, s})
}

type spyHandler struct {
	Handler
	s *partSpy
}

func (h spyHandler) Deliver(ctx context.Context, m Message) error {
	if m.Kind == KindData && len(m.Parts) > 1 {
		h.s.parted.Add(1)
		off := 0
		for _, p := range m.Parts[:len(m.Parts)-1] {
			off += len(p)
			if off%8 != 0 {
				h.s.straddled.Add(1)
				break
			}
		}
	}
	return h.Handler.Deliver(ctx, m)
}

// TestAllReduceInt64StraddlingPartsGRPC: with large messages gRPC hands the
// payload over in its frame buffers, cut where the frames end (not at int64
// boundaries, since the payload starts after a header of odd length); the
// ring reassembles the straddling int64s.
func TestAllReduceInt64StraddlingPartsGRPC(t *testing.T) {
	const n = 3
	ts := grpcCluster(t, n)
	spies := make([]Transport, n)
	for i, tr := range ts {
		spies[i] = &partSpy{Transport: tr}
	}
	rings := buildRings(t, spies, seq(n), 1, func(c *Config) { c.ChunkBytes = DefaultChunkBytes })
	for _, l := range []int{100_003, 65_537} {
		checkAllReduceInt64(t, rings, l)
	}
	var parted, straddled int32
	for _, s := range spies {
		parted += s.(*partSpy).parted.Load()
		straddled += s.(*partSpy).straddled.Load()
	}
	t.Logf("%d payloads received in parts, %d of them with an int64 cut between parts", parted, straddled)
	if straddled == 0 {
		t.Fatalf("no received payload had an int64 cut between parts (%d in parts): the test did not exercise reassembly", parted)
	}
}

// TestMixedCollectivesMem interleaves float32 and int64 sums, broadcasts and
// barriers on one ring, as a worker does (gradients, then exact counters).
func TestMixedCollectivesMem(t *testing.T) {
	const n = 3
	_, ts, _ := memCluster(t, n)
	rings := buildRings(t, ts, seq(n), 1, nil)
	for i := range 10 {
		l := 1 + (i*977)%5000
		checkAllReduce(t, rings, l)
		checkAllReduceInt64(t, rings, l)
		if i%3 == 0 {
			errs := onAll(rings, func(rank int, r *Ring) error {
				buf := intData(l, rank)
				if err := r.Broadcast(context.Background(), buf, i%n); err != nil {
					return err
				}
				if !slices.Equal(buf, intData(l, i%n)) {
					return fmt.Errorf("rank %d: broadcast differs from root %d's buffer", rank, i%n)
				}
				return r.Barrier(context.Background())
			})
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestMixedElementKindsFailMem: a rank that calls AllReduce while the others
// call AllReduceInt64 with the same length sends payloads of the wrong size;
// every rank fails with ErrProtocol, promptly, instead of summing garbage.
func TestMixedElementKindsFailMem(t *testing.T) {
	const n, l = 3, 1000
	_, ts, _ := memCluster(t, n)
	rings := buildRings(t, ts, seq(n), 1, fast)
	start := time.Now()
	errs := onAll(rings, func(rank int, r *Ring) error {
		if rank == 1 {
			return r.AllReduce(context.Background(), intData(l, rank))
		}
		return r.AllReduceInt64(context.Background(), int64Data(l, rank))
	})
	expectPeerErrors(t, errs, seq(n), time.Since(start))
	// Rank 1 gets 334 int64s where it wants 334 float32s; rank 2 the reverse.
	for r, want := range map[int]string{1: "with 2672 bytes, want data seq 1 chunk 0 with 1336 bytes",
		2: "with 1332 bytes, want data seq 1 chunk 0 with 2664 bytes"} {
		if !errors.Is(errs[r], ErrProtocol) || !strings.Contains(errs[r].Error(), want) {
			t.Errorf("rank %d: %v, want ErrProtocol %q", r, errs[r], want)
		}
	}
}

// kinds are the element kinds of a sum, for the failure tests that hold
// for both: sum starts rank's l-element contribution, check verifies l
// elements against a naive sum on every rank.
var kinds = []struct {
	name  string
	sum   func(r *Ring, l, rank int) error
	check func(t *testing.T, rings []*Ring, l int)
}{
	{"float32",
		func(r *Ring, l, rank int) error { return r.AllReduce(context.Background(), intData(l, rank)) },
		checkAllReduce},
	{"int64",
		func(r *Ring, l, rank int) error { return r.AllReduceInt64(context.Background(), int64Data(l, rank)) },
		func(t *testing.T, rings []*Ring, l int) { t.Helper(); checkAllReduceInt64(t, rings, l) }},
}

func TestAllReduceInt64ClosedRing(t *testing.T) {
	_, ts, _ := memCluster(t, 2)
	rings := buildRings(t, ts, seq(2), 1, nil)
	rings[0].Close()
	if err := rings[0].AllReduceInt64(context.Background(), []int64{1}); !errors.Is(err, ErrClosed) {
		t.Errorf("AllReduceInt64 after Close: %v, want ErrClosed", err)
	}
}
