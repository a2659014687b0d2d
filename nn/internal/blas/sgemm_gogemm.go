//go:build !cgo || gogemm

package blas

import "sync/atomic"

const backend = "go"

// kernel is the pure-Go kernel in use: KernelEnv's choice, else the fastest.
func kernel() string { return active.String() }

func kernelEnvError() error { return activeErr }

// nthreads is 1 unless SetThreads asked for more; 1 keeps every call on the
// calling goroutine.
var nthreads atomic.Int32

func init() { nthreads.Store(1) }

func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	active.sgemm(int(nthreads.Load()), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func setThreads(n int) { nthreads.Store(int32(n)) }

func threads() int { return int(nthreads.Load()) }
