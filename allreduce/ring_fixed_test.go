package allreduce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"testing"
)

// fixedImage is the conversion of the AllReduceInt64ToFloat32 tests: the
// float32 nearest to v·2^−40, a function of v alone.
func fixedImage(v int64) float32 { return float32(math.Ldexp(float64(v), -40)) }

// allReduceFixed runs AllReduceInt64ToFloat32 on every ring, rank r
// contributing data[r], and checks every rank's floats against the image
// of the naive int64 sum, bit for bit, and that every element was converted
// exactly once across the ranks.
func allReduceFixed(t *testing.T, rings []*Ring, data [][]int64) {
	t.Helper()
	l := len(data[0])
	outs := make([][]float32, len(rings))
	var converted atomic.Int64
	errs := onAll(rings, func(rank int, r *Ring) error {
		acc := slices.Clone(data[rank])
		outs[rank] = make([]float32, l)
		for i := range outs[rank] {
			outs[rank][i] = float32(math.NaN())
		}
		return r.AllReduceInt64ToFloat32(context.Background(), acc, outs[rank], func(lo, hi int) {
			converted.Add(int64(hi - lo))
			for i := lo; i < hi; i++ {
				outs[rank][i] = fixedImage(acc[i])
			}
		})
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("n=%d l=%d: %v", len(rings), l, err)
	}
	want := sumInt64(data)
	for r, out := range outs {
		for i, v := range out {
			if math.Float32bits(v) != math.Float32bits(fixedImage(want[i])) {
				t.Fatalf("n=%d l=%d rank %d: out[%d] = %v, want %v", len(rings), l, r, i, v, fixedImage(want[i]))
			}
		}
	}
	if got := converted.Load(); got != int64(l) {
		t.Fatalf("n=%d l=%d: %d elements converted, want each once (%d)", len(rings), l, got, l)
	}
}

// TestAllReduceInt64ToFloat32: the floats are the images of the exact sums
// on every rank, for every ring size, length and transport, with parts
// that do not divide the chunks (ChunkBytes 12 340).
func TestAllReduceInt64ToFloat32(t *testing.T) {
	for _, transport := range []string{"mem", "grpc"} {
		for n := 1; n <= 5; n++ {
			t.Run(fmt.Sprintf("%s/n=%d", transport, n), func(t *testing.T) {
				var ts []Transport
				if transport == "mem" {
					_, ts, _ = memCluster(t, n)
				} else {
					ts = grpcCluster(t, n)
				}
				rings := buildRings(t, ts, seq(n), 1, func(c *Config) { c.ChunkBytes = 12_340 })
				for _, l := range int64Lengths {
					data := make([][]int64, n)
					for r := range data {
						data[r] = int64Data(l, r)
						for i := range data[r] {
							data[r][i] >>= 8 // sums of up to 5 stay in range, so the images are finite
						}
					}
					allReduceFixed(t, rings, data)
				}
			})
		}
	}
}

// TestAllReduceInt64ToFloat32Lengths: out must match acc.
func TestAllReduceInt64ToFloat32Lengths(t *testing.T) {
	_, ts, _ := memCluster(t, 2)
	rings := buildRings(t, ts, seq(2), 1, nil)
	err := rings[0].AllReduceInt64ToFloat32(context.Background(), make([]int64, 3), make([]float32, 2), func(int, int) {})
	if err == nil {
		t.Fatal("len(out) 2 with len(acc) 3: no error")
	}
}
