//go:build amd64 && !noasm

package fixed

import "golang.org/x/sys/cpu"

// tile4x32 computes a 4×32 tile of integers; see tile_avx512_amd64.s.
//
//go:noescape
func tile4x32(d *float32, ldd int, a *float32, lda int, rows *int32, nmicro int, shift float32, acc *int64, ldacc int)

// haveAVX512: the kernel needs AVX-512F (zmm registers, VSCALEFPS) and
// AVX-512DQ (VCVTPS2QQ, VEXTRACTF32X8), with the zmm state enabled by the
// OS, which cpu.X86.HasAVX512F includes.
func haveAVX512() bool { return cpu.X86.HasAVX512F && cpu.X86.HasAVX512DQ }
