//go:build amd64 && !noasm

package train

import "golang.org/x/sys/cpu"

// The AVX2 kernels of the fixed-point conversions (fixed_amd64.s): the same
// bits as the Go loops, 8 values an iteration.
func fixedAVX2(acc *int64, src *float32, n int, scale float64, add bool)
func floatFromFixedAVX2(dst *float32, acc *int64, n int, scale float64)

func init() {
	if cpu.X86.HasAVX2 {
		fixedKernel = kernelAVX2
	}
}

func fixedSIMD(acc []int64, g []float32, scale float64, add bool) int {
	n := len(acc) &^ 7
	if n > 0 {
		fixedAVX2(&acc[0], &g[0], n, scale, add)
	}
	return n
}

func fromFixedSIMD(g []float32, acc []int64, scale float64) int {
	n := len(acc) &^ 7
	if n > 0 {
		floatFromFixedAVX2(&g[0], &acc[0], n, scale)
	}
	return n
}
