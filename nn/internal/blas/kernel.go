package blas

import (
	"fmt"
	"os"
	"strings"
)

// KernelEnv is the environment variable that chooses the pure-Go backend's
// kernel when the process starts: "avx512" (the AVX-512 assembly kernel,
// amd64 only), "avx2" (the AVX2+FMA assembly kernel, amd64 only) or
// "generic" (gonum's Go code, on every CPU). Unset, the fastest kernel the
// CPU runs is used. The OpenBLAS backend ignores it (OPENBLAS_CORETYPE
// chooses OpenBLAS's kernel).
const KernelEnv = "RINGTRAIN_GEMM_KERNEL"

// goKernel is a kernel of the pure-Go backend.
type goKernel int

const (
	kernelGeneric goKernel = iota // gonum's Sgemm (sgemm_gonum.go)
	kernelAVX2                    // the blocked AVX2+FMA kernel (sgemm_blocked.go)
	kernelAVX512                  // the blocked AVX-512 kernel (sgemm_blocked.go)
)

// String is the kernel's name as Kernel reports it.
func (k goKernel) String() string {
	switch k {
	case kernelAVX2:
		return "avx2-fma"
	case kernelAVX512:
		return "avx512"
	}
	return "generic"
}

// setting is the kernel's value for KernelEnv.
func (k goKernel) setting() string {
	switch k {
	case kernelAVX2:
		return "avx2"
	case kernelAVX512:
		return "avx512"
	}
	return "generic"
}

// sgemm runs the product on kernel k with the given thread count. Shapes have
// been checked; m, n, k ≥ 1 and alpha ≠ 0.
func (k goKernel) sgemm(threads int, transA, transB bool, m, n, kk int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if k == kernelGeneric {
		gonumSgemm(threads, transA, transB, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	blockedSgemm(k, threads, transA, transB, m, n, kk, alpha, a, lda, b, ldb, beta, c, ldc)
}

// goKernels are the pure-Go kernels this build runs on this CPU, fastest
// first.
func goKernels() []goKernel {
	var have []goKernel
	if haveAVX512 {
		have = append(have, kernelAVX512)
	}
	if haveAVX2 {
		have = append(have, kernelAVX2)
	}
	return append(have, kernelGeneric)
}

// KernelError reports a KernelEnv value that names no kernel this build runs
// on this CPU. The process goes on with the kernel named by Using.
type KernelError struct {
	Value string   // KernelEnv's value
	Valid []string // the values this build accepts on this CPU
	Using string   // the kernel Sgemm runs instead, as Kernel names it
	Why   string   // why Value cannot be honoured
}

func (e *KernelError) Error() string {
	return fmt.Sprintf("blas: %s=%q: %s; valid values here: %s (or unset for the fastest); using %s",
		KernelEnv, e.Value, e.Why, strings.Join(e.Valid, ", "), e.Using)
}

// chooseKernel is the kernel for a KernelEnv value, and an error when the
// value cannot be honoured.
func chooseKernel(value string) (goKernel, error) {
	have := goKernels()
	if value == "" {
		return have[0], nil
	}
	valid := make([]string, len(have))
	for i, k := range have {
		if value == k.setting() || value == k.String() {
			return k, nil
		}
		valid[i] = k.setting()
	}
	why := "no such kernel"
	switch value {
	case kernelAVX2.setting(), kernelAVX2.String():
		why = "this CPU or build lacks the AVX2+FMA kernel (it needs amd64 with AVX2 and FMA, built without -tags noasm)"
	case kernelAVX512.setting():
		why = "this CPU or build lacks the AVX-512 kernel (it needs amd64 with AVX512F, AVX2 and FMA, built without -tags noasm)"
	}
	return have[0], &KernelError{Value: value, Valid: valid, Using: have[0].String(), Why: why}
}

// The kernel chosen when the process started, and the complaint about
// KernelEnv if any. Tests switch active to cover every kernel.
var active, activeErr = chooseKernel(os.Getenv(KernelEnv))
