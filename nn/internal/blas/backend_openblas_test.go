//go:build cgo && !gogemm

package blas

import (
	"strings"
	"testing"
)

// wantBackend is the implementation this build must have compiled in.
const wantBackend = "openblas"

// TestKernelEnvErrorOpenBLAS: the variable has no effect on OpenBLAS, and
// setting it says so.
func TestKernelEnvErrorOpenBLAS(t *testing.T) {
	t.Setenv(KernelEnv, "")
	if err := KernelEnvError(); err != nil {
		t.Fatalf("KernelEnvError() = %v with %s empty", err, KernelEnv)
	}
	t.Setenv(KernelEnv, "avx2")
	err := KernelEnvError()
	if err == nil || !strings.Contains(err.Error(), KernelEnv+`="avx2"`) || !strings.Contains(err.Error(), "OPENBLAS_CORETYPE") {
		t.Fatalf("KernelEnvError() = %v, want one naming %s=\"avx2\" and OPENBLAS_CORETYPE", err, KernelEnv)
	}
}
