//go:build amd64 && !noasm && (!cgo || gogemm)

package blas

import (
	"os"
	"testing"

	"github.com/ringtrain/ringtrain/internal/testenv"
)

// TestAVX2KernelPresent: on amd64 the pure-Go build runs the AVX2 kernel.
// CI's machines have AVX2 and FMA, so there a build or CPU without it fails
// instead of skipping.
func TestAVX2KernelPresent(t *testing.T) {
	testenv.Need(t, haveAVX2, "the AVX2 kernel (a CPU with AVX2 and FMA)")
	want := "avx2-fma"
	if haveAVX512 {
		want = "avx512"
	}
	if os.Getenv(KernelEnv) == "" && Kernel() != want {
		t.Fatalf("Kernel() = %q with AVX2 and %s unset, want %s", Kernel(), KernelEnv, want)
	}
}
