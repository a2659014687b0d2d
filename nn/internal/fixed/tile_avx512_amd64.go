//go:build amd64 && !noasm

package fixed

import "golang.org/x/sys/cpu"

// tile4x32 computes a 4×32 tile of integers; see tile_avx512_amd64.s.
//
//go:noescape
func tile4x32(d *float32, a *float32, rows *int32, nmicro int, shift float32, acc *int64, ldacc int, out *float32, unscale float64)

// haveAVX512: the kernel needs AVX-512F (zmm registers, VSCALEFPS) and
// AVX-512DQ (VCVTPS2QQ, VEXTRACTF32X8), with the zmm state enabled by the
// OS, which cpu.X86.HasAVX512F includes.
func haveAVX512() bool { return cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ }

// maxAbsBits is MaxAbs's loop over a multiple of 64 values; see
// tile_avx512_amd64.s.
//
//go:noescape
func maxAbsBits(v *float32, n int) uint32
