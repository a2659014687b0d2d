//go:build !cgo || gogemm

package train

import (
	"fmt"
	"testing"

	"github.com/ringtrain/ringtrain/internal/testenv"
	"github.com/ringtrain/ringtrain/nn"
)

// TestExactFusedMatchesClassic: with the pure-Go GEMM, the fixed-point
// kernel's steps (one backward over all micro-shards, weight gradients
// straight to integers, and in one process straight back to float32) train
// the same bits as a float32 gradient per micro-shard converted after, at 1
// and 3 ranks.
func TestExactFusedMatchesClassic(t *testing.T) {
	testenv.Need(t, nn.FixedKernel() != "" && nn.BLASKernel() != "generic", "the fixed-point kernel and the pure-Go GEMM's FMA kernels (AVX-512F, DQ, AVX2 and FMA)")
	set := synthetic(512, 12, 3, 1)
	cfg := smallConfig()
	cfg.Batch, cfg.MicroBatch, cfg.Exact = 30, 4, true
	for _, world := range []int{1, 3} {
		t.Run(fmt.Sprint(world), func(t *testing.T) {
			var hashes [2][32]byte
			for i, fused := range []bool{true, false} {
				states, steppers := ringReplicas(t, cfg, set, world)
				for _, s := range steppers {
					s.exact.fused = fused
				}
				for range 5 {
					stepAll(t, steppers, make([]bool, world))
				}
				hashes[i] = states[0].ParamHash()
			}
			if hashes[0] != hashes[1] {
				t.Fatalf("%d ranks: fused %x, classic %x", world, hashes[0], hashes[1])
			}
		})
	}
}
