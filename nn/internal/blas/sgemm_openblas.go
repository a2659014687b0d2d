//go:build cgo && !purego

package blas

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
)

const backend = "openblas"

// kernel is OpenBLAS's core name, fixed when the library loads.
var kernel = sync.OnceValue(func() string { return C.GoString(C.openblas_get_corename()) })

// kernelEnvError: KernelEnv chooses among the pure-Go kernels, which this
// build does not run.
func kernelEnvError() error {
	if v := os.Getenv(KernelEnv); v != "" {
		return fmt.Errorf("blas: %s=%q has no effect: this build multiplies with OpenBLAS (its kernel is chosen with OPENBLAS_CORETYPE); build with CGO_ENABLED=0 or -tags purego for the pure-Go kernels", KernelEnv, v)
	}
	return nil
}

func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans), C.enum_CBLAS_TRANSPOSE(C.CblasNoTrans)
	if transA {
		ta = C.CblasTrans
	}
	if transB {
		tb = C.CblasTrans
	}
	C.cblas_sgemm(C.CblasRowMajor, ta, tb, C.blasint(m), C.blasint(n), C.blasint(k),
		C.float(alpha), (*C.float)(&a[0]), C.blasint(lda),
		(*C.float)(&b[0]), C.blasint(ldb),
		C.float(beta), (*C.float)(&c[0]), C.blasint(ldc))
}

func setThreads(n int) { C.openblas_set_num_threads(C.int(n)) }

func threads() int { return int(C.openblas_get_num_threads()) }
