//go:build !cgo || gogemm

// The pure-Go GEMM's build: its FMA kernels and the fixed-point kernel
// share one order of roundings.

package fixed

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ringtrain/ringtrain/internal/testenv"
	"github.com/ringtrain/ringtrain/nn/internal/blas"
)

// TestWeightGradMatchesGEMM: the kernel's float32 chain is the pure-Go
// GEMM's, so exact training gets the same bits whichever way it computes a
// micro-shard's gradient.
func TestWeightGradMatchesGEMM(t *testing.T) {
	testenv.Need(t, Kernel() != "" && blas.Kernel() != "generic", "the fixed-point kernel and the pure-Go GEMM's FMA kernels (AVX-512F, DQ, AVX2 and FMA)")
	rng := rand.New(rand.NewPCG(3, 4))
	const outW, inW = 37, 300
	rows := []int32{16, 16, 16, 9}
	total := 57
	d := randVals(rng, total*outW, 4)
	a := randVals(rng, total*inW, 4)
	shift := shiftFor(d, a, rows)
	want := make([]int64, outW*inW)
	g := make([]float32, outW*inW)
	r0 := 0
	for _, n := range rows {
		blas.Sgemm(true, false, outW, inW, int(n), 1, d[r0*outW:], outW, a[r0*inW:], inW, 0, g, inW)
		for i, v := range g {
			want[i] += int64(math.RoundToEven(math.Ldexp(float64(v), shift)))
		}
		r0 += int(n)
	}
	got := make([]int64, outW*inW)
	var s Scratch
	WeightGrad(got, d, outW, a, inW, rows, shift, &s)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("acc[%d] = %d, GEMM then round gives %d", i, got[i], want[i])
		}
	}
}
