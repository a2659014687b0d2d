package nn

import "github.com/ringtrain/ringtrain/nn/internal/blas"

// SetThreads sets how many threads one matrix multiply may use (n < 1 means 1).
// It is process-wide, a property of the BLAS library: with OpenBLAS it calls
// openblas_set_num_threads, whose default is OPENBLAS_NUM_THREADS or every
// core; the pure-Go build defaults to 1, which never starts a goroutine.
func SetThreads(n int) { blas.SetThreads(n) }

// Threads reports the current SetThreads setting.
func Threads() int { return blas.Threads() }

// BLASBackend names the matrix multiply compiled in: "openblas" (cgo) or
// "go" (CGO_ENABLED=0 or -tags gogemm).
func BLASBackend() string { return blas.Backend }

// BLASKernel names the kernel the matrix multiply runs on this machine:
// OpenBLAS's core name, chosen per CPU (e.g. "Haswell", "SkylakeX",
// "Cooperlake"), or the pure-Go backend's "avx512", "avx2-fma" or
// "generic". With BLASBackend, the thread count and GOARCH it is what can
// change a product's float32 bits between machines; BLASBitsKernel tells
// which kernels compute the same bits.
func BLASKernel() string { return blas.Kernel() }

// BLASBitsKernel names BLASKernel's class of float32 bits: two machines whose
// BLASBackend, BLASBitsKernel, thread count and GOARCH are equal compute the
// same products, bit for bit. The pure-Go "avx512" and "avx2-fma" take the
// same fused multiply-adds in the same order, so both are "avx2-fma" (the
// name that came first); every other kernel, OpenBLAS's included, is its own
// class.
func BLASBitsKernel() string {
	if k := blas.Kernel(); blas.Backend != "go" || k != "avx512" {
		return k
	}
	return "avx2-fma"
}

// BLASKernelError reports a RINGTRAIN_GEMM_KERNEL value this process cannot
// honour (an unknown kernel, one the CPU lacks, or any value in the OpenBLAS
// build, where it has no effect) as one line naming the variable, the value
// and the valid values; nil when it is unset or honoured.
func BLASKernelError() error { return blas.KernelEnvError() }
