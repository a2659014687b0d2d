//go:build !cgo || purego

package blas

import (
	"math/rand/v2"
	"testing"
)

// wantBackend is the implementation this build must have compiled in.
const wantBackend = "gonum"

// TestSgemmIsGonum: in the pure-Go build Sgemm is gonum's kernel itself,
// bit for bit, not merely something equally accurate.
func TestSgemmIsGonum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const m, n, k = 70, 200, 33
	a, b := randSlice(rng, m*k), randSlice(rng, k*n)
	c := randSlice(rng, m*n)
	want := append([]float32(nil), c...)
	SetThreads(1)
	Sgemm(false, false, m, n, k, 0.5, a, k, b, n, 0.25, c, n)
	gonumSgemm(1, false, false, m, n, k, 0.5, a, k, b, n, 0.25, want, n)
	for i := range c {
		if c[i] != want[i] {
			t.Fatalf("c[%d] = %v, gonum computes %v: Sgemm is not the pure-Go kernel", i, c[i], want[i])
		}
	}
}
