//go:build amd64 && !noasm && (!cgo || gogemm)

package blas

import "golang.org/x/sys/cpu"

// haveAVX512 reports whether this CPU runs panelAVX512 (AVX512F, with the
// zmm state enabled by the OS, which cpu.X86.HasAVX512F includes) and the
// AVX2 packing routines that feed it.
var haveAVX512 = cpu.X86.HasAVX512F && haveAVX2

// panelAVX512 computes 8×32 tiles of C down one column of tiles; see
// kernel_avx512_amd64.s.
//
//go:noescape
func panelAVX512(k, tiles int, a, b, c *float32, ldc int, alpha, beta float32, load bool)
