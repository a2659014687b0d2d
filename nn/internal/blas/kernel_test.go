package blas

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// kernelDims are the sizes every kernel is held to in each of m, n and k:
// below, at and just past the micro-tiles (6×16 and 8×32), their multiples
// and the k-loop's unrolling by 4.
var kernelDims = []int{1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 129}

// operands returns random A, B and C for the shape, with strides 0..2 wider
// than the rows; C's elements are NaN where beta is 0, which must not
// survive, and the padding between C's rows must.
func operands(rng *rand.Rand, transA, transB bool, m, n, k int, beta float32) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	lda, ldb, ldc = ac+rng.IntN(3), bc+rng.IntN(3), n+rng.IntN(3)
	a = randSlice(rng, (ar-1)*lda+ac)
	b = randSlice(rng, (br-1)*ldb+bc)
	c = randSlice(rng, (m-1)*ldc+n)
	if beta == 0 {
		for i := range m {
			for j := range n {
				c[i*ldc+j] = float32(math.NaN())
			}
		}
	}
	return a, lda, b, ldb, c, ldc
}

// TestGoKernelsMatchNaive: every pure-Go kernel this CPU runs, on every
// combination of kernelDims, against the float64 triple loop, cycling
// through the four transposes and values of alpha and beta.
func TestGoKernelsMatchNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphas := []float32{1, -0.5, 2, 0.75}
	betas := []float32{0, 1, 0.25, -1.5, 0}
	for _, kern := range goKernels() {
		for _, threads := range []int{1, 2} {
			trial := 0
			for _, m := range kernelDims {
				for _, n := range kernelDims {
					for _, k := range kernelDims {
						transA, transB := trial&1 == 1, trial&2 == 2
						alpha, beta := alphas[trial%len(alphas)], betas[trial%len(betas)]
						trial++
						a, lda, b, ldb, c, ldc := operands(rng, transA, transB, m, n, k, beta)
						want := naive(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
						kern.sgemm(threads, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
						for i := range c {
							tol := 1e-5 * float64(k+1) * max(1, math.Abs(float64(want[i])))
							// NaN fails the comparison, as a NaN that beta = 0 let through must.
							if !(math.Abs(float64(c[i]-want[i])) <= tol) {
								t.Fatalf("%s threads=%d transA=%v transB=%v m=%d n=%d k=%d alpha=%v beta=%v lda=%d ldb=%d ldc=%d: c[%d] = %v, want %v",
									kern, threads, transA, transB, m, n, k, alpha, beta, lda, ldb, ldc, i, c[i], want[i])
							}
						}
					}
				}
			}
		}
	}
}

// TestGoKernelsDeterministic: a kernel gives the same bits on repeated calls
// and at every thread count, for shapes that span several k-blocks, A blocks
// and B panels, in each transpose.
func TestGoKernelsDeterministic(t *testing.T) {
	shapes := []struct{ m, n, k int }{
		{32, 512, 784}, {512, 784, 32}, {301, 2100, 600}, {145, 40, 513},
	}
	for _, kern := range goKernels() {
		for i, s := range shapes {
			rng := rand.New(rand.NewPCG(7, uint64(i)))
			transA, transB := i&1 == 1, i&2 == 2
			a, lda, b, ldb, c0, ldc := operands(rng, transA, transB, s.m, s.n, s.k, 0.5)
			want := append([]float32(nil), c0...)
			kern.sgemm(1, transA, transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0.5, want, ldc)
			threads := []int{1, 2, 3, 7}
			if kern == kernelGeneric {
				threads = []int{1} // gonum's parallel Sgemm sums in another order
			}
			for _, th := range threads {
				c := append([]float32(nil), c0...)
				kern.sgemm(th, transA, transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0.5, c, ldc)
				for j := range c {
					if math.Float32bits(c[j]) != math.Float32bits(want[j]) {
						t.Fatalf("%s %d×%d×%d transA=%v transB=%v threads=%d: c[%d] = %v, one thread gave %v",
							kern, s.m, s.n, s.k, transA, transB, th, j, c[j], want[j])
					}
				}
			}
		}
	}
}

func TestChooseKernel(t *testing.T) {
	best := goKernels()[0]
	for _, tc := range []struct {
		value   string
		want    goKernel
		wantErr bool
	}{
		{"", best, false},
		{"generic", kernelGeneric, false},
		{"avx2", kernelAVX2, !haveAVX2},
		{"avx2-fma", kernelAVX2, !haveAVX2},
		{"avx512", kernelAVX512, !haveAVX512},
		{"avx1024", best, true},
		{"AVX2", best, true},
		{"AVX512", best, true},
	} {
		got, err := chooseKernel(tc.value)
		if tc.wantErr {
			var ke *KernelError
			if !errors.As(err, &ke) {
				t.Fatalf("chooseKernel(%q) = %v, %v; want a *KernelError", tc.value, got, err)
			}
			if got != best {
				t.Errorf("chooseKernel(%q) uses %s, want the fastest, %s", tc.value, got, best)
			}
			msg := err.Error()
			for _, part := range []string{KernelEnv, `"` + tc.value + `"`, "generic", "using " + best.String()} {
				if !strings.Contains(msg, part) {
					t.Errorf("chooseKernel(%q) error %q does not name %q", tc.value, msg, part)
				}
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("chooseKernel(%q) = %v, %v; want %v", tc.value, got, err, tc.want)
		}
	}
}

func TestBlockK(t *testing.T) {
	for _, tc := range []struct{ k, want int }{
		{1, 1}, {255, 255}, {256, 256}, {257, 129}, {512, 256}, {784, 196}, {1000, 250},
	} {
		if got := blockK(tc.k); got != tc.want {
			t.Errorf("blockK(%d) = %d, want %d", tc.k, got, tc.want)
		}
	}
}
