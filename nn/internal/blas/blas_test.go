package blas

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// naive is the textbook triple loop in float64.
func naive(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float32 {
	out := append([]float32(nil), c...)
	for i := range m {
		for j := range n {
			var sum float64
			for p := range k {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				sum += float64(av) * float64(bv)
			}
			old := float64(c[i*ldc+j])
			if beta == 0 {
				old = 0
			}
			out[i*ldc+j] = float32(float64(alpha)*sum + float64(beta)*old)
		}
	}
	return out
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

type sgemmFunc func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// implementations are the products under test: the compiled-in backend
// through Sgemm, and the pure-Go one directly, serial and parallel, so that a
// cgo build checks both.
func implementations() map[string]sgemmFunc {
	impls := map[string]sgemmFunc{"Sgemm/" + Backend: Sgemm}
	for _, threads := range []int{1, 3} {
		impls["gonum/threads="+string(rune('0'+threads))] = func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
			checkShapes(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
			gonumSgemm(threads, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		}
	}
	return impls
}

// TestBackend: the build tags select the implementation the package
// documents: OpenBLAS with cgo, gonum with CGO_ENABLED=0 or -tags gogemm.
func TestBackend(t *testing.T) {
	if Backend != wantBackend {
		t.Fatalf("Backend = %q, want %q for this build's tags", Backend, wantBackend)
	}
}

func TestSgemmMatchesNaive(t *testing.T) {
	dims := []int{1, 2, 3, 7, 17, 64, 65, 130, 200}
	for _, threads := range []int{1, 2} {
		SetThreads(threads)
		for name, sgemm := range implementations() {
			rng := rand.New(rand.NewPCG(1, 2))
			for trial := range 120 {
				m, n, k := dims[rng.IntN(len(dims))], dims[rng.IntN(len(dims))], dims[rng.IntN(len(dims))]
				transA, transB := rng.IntN(2) == 1, rng.IntN(2) == 1
				alpha := []float32{1, -0.5, 2}[trial%3]
				beta := []float32{0, 1, 0.25}[(trial/3)%3]
				ar, ac := m, k
				if transA {
					ar, ac = k, m
				}
				br, bc := k, n
				if transB {
					br, bc = n, k
				}
				// Strides wider than the rows, so leading dimensions are exercised.
				lda, ldb, ldc := ac+rng.IntN(3), bc+rng.IntN(3), n+rng.IntN(3)
				a := randSlice(rng, (ar-1)*lda+ac)
				b := randSlice(rng, (br-1)*ldb+bc)
				c := randSlice(rng, (m-1)*ldc+n)
				want := naive(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
				sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
				for i := range c {
					tol := 1e-4 * float64(k+1)
					if d := math.Abs(float64(c[i] - want[i])); d > tol*max(1, math.Abs(float64(want[i]))) {
						t.Fatalf("%s SetThreads(%d) transA=%v transB=%v m=%d n=%d k=%d alpha=%v beta=%v lda=%d ldb=%d ldc=%d: c[%d] = %v, want %v",
							name, threads, transA, transB, m, n, k, alpha, beta, lda, ldb, ldc, i, c[i], want[i])
					}
				}
			}
		}
	}
	SetThreads(1)
}

func TestSgemmBetaZeroOverwritesNaN(t *testing.T) {
	a := []float32{1, 2, 3, 4}
	b := []float32{5, 6, 7, 8}
	c := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.NaN()), 0}
	Sgemm(false, false, 2, 2, 2, 1, a, 2, b, 2, 0, c, 2)
	want := []float32{19, 22, 43, 50}
	for i := range c {
		if c[i] != want[i] {
			t.Fatalf("c = %v, want %v", c, want)
		}
	}
	// k == 0: C = beta*C only.
	c = []float32{1, 2}
	Sgemm(false, false, 1, 2, 0, 1, nil, 1, nil, 2, 0.5, c, 2)
	if c[0] != 0.5 || c[1] != 1 {
		t.Fatalf("k=0: c = %v, want [0.5 1]", c)
	}
}

func TestSgemmShapePanics(t *testing.T) {
	defer func() {
		r := recover()
		if _, ok := r.(*ShapeError); !ok {
			t.Fatalf("recovered %v (%T), want *ShapeError", r, r)
		}
	}()
	Sgemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
}

func TestSetThreads(t *testing.T) {
	SetThreads(1)
	if got := Threads(); got != 1 {
		t.Fatalf("Threads() = %d after SetThreads(1)", got)
	}
	SetThreads(0)
	if got := Threads(); got != 1 {
		t.Fatalf("Threads() = %d after SetThreads(0), want 1", got)
	}
}

func BenchmarkSgemm512(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 512
	x, y, z := randSlice(rng, n*n), randSlice(rng, n*n), make([]float32, n*n)
	SetThreads(1)
	for b.Loop() {
		Sgemm(false, true, n, n, n, 1, x, n, y, n, 0, z, n)
	}
	b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// TestKernel: the kernel is named, and stays the same for the process.
func TestKernel(t *testing.T) {
	k := Kernel()
	if k == "" {
		t.Fatal("Kernel() is empty")
	}
	if Backend == "go" && k != "avx512" && k != "avx2-fma" && k != "generic" {
		t.Fatalf("Kernel() = %q for the pure-Go backend, want avx512, avx2-fma or generic", k)
	}
	if again := Kernel(); again != k {
		t.Fatalf("Kernel() = %q, then %q", k, again)
	}
	t.Logf("%s kernel %s", Backend, k)
}

// BenchmarkSgemmStep784 times the products of one training step of nn's
// 784-512-512-10 benchmark network (first layer) for batches of rows: the
// forward X·Wᵀ, the weight gradient δᵀ·X (k = rows) and the delta δ·W.
func BenchmarkSgemmStep784(b *testing.B) {
	const in, out = 784, 512
	for _, rows := range []int{16, 32, 64, 128} {
		for _, p := range []struct {
			name           string
			transA, transB bool
			m, n, k        int
		}{
			{"forward", false, true, rows, out, in},
			{"weightgrad", true, false, out, in, rows},
			{"delta", false, false, rows, in, out},
		} {
			b.Run(p.name+"/rows="+strconv.Itoa(rows), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 2))
				x, y, z := randSlice(rng, p.m*p.k), randSlice(rng, p.k*p.n), make([]float32, p.m*p.n)
				lda, ldb := p.k, p.n
				if p.transA {
					lda = p.m
				}
				if p.transB {
					ldb = p.k
				}
				SetThreads(1)
				for b.Loop() {
					Sgemm(p.transA, p.transB, p.m, p.n, p.k, 1, x, lda, y, ldb, 0, z, p.n)
				}
				b.ReportMetric(2*float64(p.m*p.n*p.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
