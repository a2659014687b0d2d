//go:build amd64 && !noasm && (!cgo || gogemm)

package blas

import (
	"os"
	"testing"

	"golang.org/x/sys/cpu"
)

// TestAVX512KernelPresent: on an amd64 CPU that reports AVX512F (as CI's
// machines do), the pure-Go build has the AVX-512 kernel and runs it by
// default; losing it fails instead of skipping.
func TestAVX512KernelPresent(t *testing.T) {
	if !cpu.X86.HasAVX512F {
		t.Skip("this CPU does not report AVX512F")
	}
	if !haveAVX512 {
		t.Fatal("the CPU reports AVX512F but the AVX-512 kernel is not available")
	}
	if os.Getenv(KernelEnv) == "" && Kernel() != "avx512" {
		t.Fatalf("Kernel() = %q with AVX512F and %s unset, want avx512", Kernel(), KernelEnv)
	}
}
