//go:build !cgo || gogemm

package blas

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// wantBackend is the implementation this build must have compiled in.
const wantBackend = "go"

// TestSgemmRunsActiveKernel: Sgemm runs the kernel Kernel names, bit for
// bit, whichever of this CPU's kernels is active.
func TestSgemmRunsActiveKernel(t *testing.T) {
	defer func(k goKernel) { active = k }(active)
	rng := rand.New(rand.NewPCG(3, 4))
	const m, n, k = 70, 200, 33
	a, b := randSlice(rng, m*k), randSlice(rng, k*n)
	c0 := randSlice(rng, m*n)
	SetThreads(1)
	for _, kern := range goKernels() {
		active = kern
		if Kernel() != kern.String() {
			t.Fatalf("Kernel() = %q with %s active", Kernel(), kern)
		}
		c, want := append([]float32(nil), c0...), append([]float32(nil), c0...)
		Sgemm(false, false, m, n, k, 0.5, a, k, b, n, 0.25, c, n)
		kern.sgemm(1, false, false, m, n, k, 0.5, a, k, b, n, 0.25, want, n)
		for i := range c {
			if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: c[%d] = %v, the kernel computes %v: Sgemm is not the active kernel", kern, i, c[i], want[i])
			}
		}
	}
}

// TestKernelEnvError: the error is KernelEnv's complaint from start-up, nil
// when the variable is unset.
func TestKernelEnvError(t *testing.T) {
	err := KernelEnvError()
	if os.Getenv(KernelEnv) == "" && err != nil {
		t.Fatalf("KernelEnvError() = %v with %s unset", err, KernelEnv)
	}
	t.Logf("%s=%q: kernel %s, error %v", KernelEnv, os.Getenv(KernelEnv), Kernel(), err)
}
