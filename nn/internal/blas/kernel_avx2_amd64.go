//go:build amd64 && !noasm && (!cgo || gogemm)

package blas

import "golang.org/x/sys/cpu"

// haveAVX2 reports whether this CPU runs panelAVX2 and the packing routines:
// AVX2 and FMA, with the ymm state enabled by the OS (which cpu.X86.HasAVX2
// includes).
var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// panelAVX2 computes 6×16 tiles of C down one column of tiles; see
// kernel_avx2_amd64.s.
//
//go:noescape
func panelAVX2(k, tiles int, a, b, c *float32, ldc int, alpha, beta float32, load bool)
