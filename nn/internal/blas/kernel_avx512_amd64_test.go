//go:build amd64 && !noasm && (!cgo || gogemm)

package blas

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/ringtrain/ringtrain/internal/testenv"
)

// TestAVX512KernelPresent: on an amd64 CPU that reports AVX512F (as CI's
// machines do), the pure-Go build has the AVX-512 kernel and runs it by
// default; losing it fails instead of skipping.
func TestAVX512KernelPresent(t *testing.T) {
	testenv.Need(t, cpu.X86.HasAVX512F, "a CPU with AVX-512F")
	if !haveAVX512 {
		t.Fatal("the CPU reports AVX512F but the AVX-512 kernel is not available")
	}
	if os.Getenv(KernelEnv) == "" && Kernel() != "avx512" {
		t.Fatalf("Kernel() = %q with AVX512F and %s unset, want avx512", Kernel(), KernelEnv)
	}
}

// TestBlockedKernelsAgree: the AVX-512 and AVX2 kernels take the same
// roundings, so they compute the same bits, on every combination of
// kernelDims and on shapes spanning several k-blocks, A blocks and B panels.
func TestBlockedKernelsAgree(t *testing.T) {
	testenv.Need(t, haveAVX512 && haveAVX2, "the AVX-512 and the AVX2 kernels (AVX-512F, AVX2 and FMA)")
	type shape struct{ m, n, k int }
	var shapes []shape
	for _, m := range kernelDims {
		for _, n := range kernelDims {
			for _, k := range kernelDims {
				shapes = append(shapes, shape{m, n, k})
			}
		}
	}
	shapes = append(shapes, shape{256, 784, 512}, shape{301, 2100, 600}, shape{145, 40, 513}, shape{16, 512, 784})
	rng := rand.New(rand.NewPCG(9, 10))
	alphas := []float32{1, -0.5, 2, 0.75}
	betas := []float32{0, 1, 0.25, -1.5, 0}
	for trial, s := range shapes {
		transA, transB := trial&1 == 1, trial&2 == 2
		alpha, beta := alphas[trial%len(alphas)], betas[trial%len(betas)]
		a, lda, b, ldb, c0, ldc := operands(rng, transA, transB, s.m, s.n, s.k, beta)
		want := append([]float32(nil), c0...)
		kernelAVX2.sgemm(1, transA, transB, s.m, s.n, s.k, alpha, a, lda, b, ldb, beta, want, ldc)
		c := append([]float32(nil), c0...)
		kernelAVX512.sgemm(1, transA, transB, s.m, s.n, s.k, alpha, a, lda, b, ldb, beta, c, ldc)
		for i := range c {
			if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%d×%d×%d transA=%v transB=%v alpha=%v beta=%v: avx512 c[%d] = %v, avx2-fma %v",
					s.m, s.n, s.k, transA, transB, alpha, beta, i, c[i], want[i])
			}
		}
	}
}
