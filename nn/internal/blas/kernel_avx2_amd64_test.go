//go:build amd64 && !noasm && (!cgo || gogemm)

package blas

import (
	"os"
	"testing"
)

// TestAVX2KernelPresent: on amd64 the pure-Go build runs the AVX2 kernel.
// CI's machines have AVX2 and FMA, so there a build or CPU without it fails
// instead of skipping.
func TestAVX2KernelPresent(t *testing.T) {
	if !haveAVX2 {
		if os.Getenv("CI") != "" {
			t.Fatal("no AVX2 kernel on amd64 in CI: this build (-tags noasm?) or CPU lost it")
		}
		t.Skip("no AVX2+FMA on this CPU, or built with -tags noasm")
	}
	want := "avx2-fma"
	if haveAVX512 {
		want = "avx512"
	}
	if os.Getenv(KernelEnv) == "" && Kernel() != want {
		t.Fatalf("Kernel() = %q with AVX2 and %s unset, want %s", Kernel(), KernelEnv, want)
	}
}
