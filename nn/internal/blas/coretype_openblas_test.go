//go:build cgo && !gogemm

package blas

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"

	"github.com/ringtrain/ringtrain/internal/testenv"
)

// TestKernelFitsCPU: on a CPU with AVX2 and FMA a DYNAMIC_ARCH OpenBLAS runs
// an AVX2 or AVX-512 kernel, never the SSE3 Prescott that 0.3.21 picks for
// CPUs it does not know (Sapphire Rapids).
func TestKernelFitsCPU(t *testing.T) {
	if v, set := os.LookupEnv("OPENBLAS_CORETYPE"); set {
		t.Skipf("OPENBLAS_CORETYPE=%q chooses the kernel", v)
	}
	testenv.Need(t, cpu.X86.HasAVX2 && cpu.X86.HasFMA, "a CPU with AVX2 and FMA")
	testenv.Need(t, dynamicArch(), "an OpenBLAS built with DYNAMIC_ARCH (Debian's libopenblas-dev), not for one target ("+Kernel()+")")
	k := Kernel()
	if k == "Prescott" || !wideCores[strings.ToLower(k)] {
		t.Fatalf("Kernel() = %q on a CPU with AVX2 and FMA (OpenBLAS chose %q), want an AVX2 or AVX-512 kernel", k, replacedCore)
	}
	if replacedCore != "" {
		t.Logf("OpenBLAS chose %s; running %s", replacedCore, k)
	}
}

func TestCoreToForce(t *testing.T) {
	for _, tc := range []struct {
		own          string
		avx512, avx2 bool
		want         string
	}{
		{"Prescott", true, true, "SkylakeX"}, // 0.3.21 on Sapphire Rapids
		{"Prescott", false, true, "Haswell"},
		{"Prescott", false, false, ""},
		{"Sandybridge", false, true, "Haswell"},
		{"Nehalem", true, true, "SkylakeX"},
		{"Haswell", true, true, ""}, // OpenBLAS's own choice among the wide kernels stands
		{"SkylakeX", true, true, ""},
		{"Cooperlake", true, true, ""},
		{"sapphirerapids", true, true, ""},
		{"Zen", false, true, ""},
		{"Unknown", true, true, "SkylakeX"},
	} {
		if got := coreToForce(tc.own, tc.avx512, tc.avx2); got != tc.want {
			t.Errorf("coreToForce(%q, avx512 %v, avx2 %v) = %q, want %q", tc.own, tc.avx512, tc.avx2, got, tc.want)
		}
	}
}
