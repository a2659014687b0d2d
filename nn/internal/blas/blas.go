// Package blas is the single-precision matrix multiply behind package nn.
//
// Two backends are selected at build time:
//
//   - sgemm_openblas.go (cgo enabled, no "gogemm" tag): cblas_sgemm from
//     OpenBLAS, linked with -lopenblas. SetThreads forwards to
//     openblas_set_num_threads; the default is OpenBLAS's own
//     (OPENBLAS_NUM_THREADS, else every core). A DYNAMIC_ARCH build picks
//     its kernel per CPU at load time (OPENBLAS_CORETYPE overrides it);
//     Kernel names it. Where it picks one for an older CPU than this one
//     (0.3.21 does not know Sapphire Rapids and runs Prescott's SSE3
//     kernel, about 4× slower) and OPENBLAS_CORETYPE is unset, the
//     package's init reselects, before any call, SkylakeX on CPUs with
//     AVX-512F, DQ, BW and VL, or Haswell on CPUs with AVX2 and FMA
//     (through gotoblas_dynamic_quit and gotoblas_dynamic_init, the way
//     OPENBLAS_CORETYPE would have at load). An OpenBLAS built for one
//     target keeps its kernel.
//   - sgemm_gogemm.go (CGO_ENABLED=0 or -tags gogemm): pure Go, no cgo, with
//     three kernels, chosen when the process starts. Two are blocked
//     (sgemm_blocked.go): op(A) and op(B) are packed into blocks sized for L2
//     and L1 (pack_avx2_amd64.s), and an assembly micro-kernel computes tiles
//     of C with fused multiply-adds: "avx512" (kernel_avx512_amd64.s, 8×32
//     tiles in zmm registers) on amd64 CPUs with AVX512F, AVX2 and FMA,
//     about as fast as OpenBLAS's SkylakeX kernel; "avx2-fma"
//     (kernel_avx2_amd64.s, 6×16 tiles in ymm registers) on amd64 CPUs with
//     AVX2 and FMA, about as fast as OpenBLAS's Haswell kernel. The third,
//     "generic", is gonum's Sgemm, on every CPU.
//     The fastest the CPU runs is used unless RINGTRAIN_GEMM_KERNEL (KernelEnv)
//     says "avx512", "avx2" or "generic"; a value that cannot be honoured
//     leaves the fastest in place and is reported by KernelEnvError. -tags
//     noasm leaves the assembly out (a package using cgo cannot hold Go
//     assembly, so the OpenBLAS build never has it). With one thread (the
//     default) every call runs on the calling goroutine; with more, the call
//     starts that many goroutines (avx512, avx2-fma: one per stripe of C) or
//     up to GOMAXPROCS (generic: gonum's parallel Sgemm) and waits for them
//     before returning.
//
// Two machines with equal Backend, Kernel and Threads compute the same
// float32 bits. For avx512 and avx2-fma the thread count does not change
// them either, nor do m, n or the other rows and columns computed in the
// same call: each C element is one chain of fused multiply-adds per k-block,
// in order of k, and the k-blocks depend on k alone, not on the tiling or the
// threads. The two take the same roundings, so avx512 and avx2-fma agree bit
// for bit. Each pure-Go kernel (generic with one thread) computes a row of C
// from that row of op(A), op(B) and C alone: its bits do not depend on m or
// on which other rows are multiplied with it, so one product over many
// micro-shards gives each micro-shard's bits. OpenBLAS promises none of this.
//
// All matrices are row-major. Sgemm computes
//
//	C = alpha*op(A)*op(B) + beta*C
//
// where op(X) is X or Xᵀ, op(A) is m×k, op(B) is k×n and C is m×n. Sgemm checks
// the shapes in Go before calling into either implementation and panics with a
// *ShapeError when they are inconsistent.
package blas

import "fmt"

// Backend names the implementation compiled in: "openblas", or "go" for the
// pure-Go backend.
const Backend = backend

// Kernel names the kernel Sgemm runs on this machine: OpenBLAS's core name
// (openblas_get_corename: the kernel a DYNAMIC_ARCH build picks for the CPU,
// or the package's init in its place, e.g. "Haswell", "SkylakeX",
// "Cooperlake", or the one a build was compiled for), or for the pure-Go
// backend "avx512", "avx2-fma" or "generic" (gonum's Sgemm, the same Go code
// on every CPU of one GOARCH): the one
// actually in use, whatever KernelEnv asked for. Two machines with equal
// Backend, Kernel and Threads compute the same float32 bits.
func Kernel() string { return kernel() }

// KernelEnvError reports a KernelEnv value that this process cannot honour,
// as one line naming the variable, the value, the valid values and the
// kernel used instead; nil when KernelEnv is unset or honoured. The OpenBLAS
// build reports any value, since there the variable has no effect.
func KernelEnvError() error { return kernelEnvError() }

// ShapeError reports operands whose sizes do not fit the requested product.
// It is a programmer error, so Sgemm panics with it.
type ShapeError struct {
	What string
}

func (e *ShapeError) Error() string { return "blas: Sgemm: " + e.What }

// Sgemm computes C = alpha*op(A)*op(B) + beta*C on row-major matrices.
// op(A) is m×k (A is k×m when transA), op(B) is k×n (B is n×k when transB),
// C is m×n. lda, ldb and ldc are the row strides of A, B and C as stored.
// C must not alias A or B.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkShapes(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		scale(m, n, beta, c, ldc)
		return
	}
	sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SetThreads sets how many threads one Sgemm call may use. n < 1 is taken as 1.
// The setting is process-wide: it belongs to the BLAS library, not to a caller.
func SetThreads(n int) {
	if n < 1 {
		n = 1
	}
	setThreads(n)
}

// Threads reports the current thread setting.
func Threads() int { return threads() }

func checkShapes(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(&ShapeError{fmt.Sprintf("negative dimension m=%d n=%d k=%d", m, n, k)})
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMatrix("A", ar, ac, a, lda)
	checkMatrix("B", br, bc, b, ldb)
	checkMatrix("C", m, n, c, ldc)
}

func checkMatrix(name string, rows, cols int, x []float32, ld int) {
	if ld < max(cols, 1) {
		panic(&ShapeError{fmt.Sprintf("ld%s = %d, want >= %d (columns)", name, ld, max(cols, 1))})
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(&ShapeError{fmt.Sprintf("len(%s) = %d, want >= %d for %d×%d with stride %d", name, len(x), need, rows, cols, ld)})
	}
}

// scale sets C = beta*C, treating beta == 0 as an overwrite (NaNs in C vanish),
// as reference BLAS does.
func scale(m, n int, beta float32, c []float32, ldc int) {
	for i := range m {
		row := c[i*ldc : i*ldc+n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}
