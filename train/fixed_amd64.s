//go:build amd64 && !noasm

#include "textflag.h"

// The fixed-point conversions of exact training, 8 values an iteration with
// AVX2, giving the Go loops' bits (fixed.go): a float32 widens to float64
// exactly, the scale is a power of two (exact), and adding 1.5·2^52 rounds
// |x| < 2^51 to the nearest integer (ties to even), found in the low bits.

// func fixedAVX2(acc *int64, src *float32, n int, scale float64, add bool)
// acc[i] (+)= round(float64(src[i]) * scale) for i < n, n a multiple of 8.
TEXT ·fixedAVX2(SB), NOSPLIT, $0-33
	MOVQ         acc+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	MOVSD        scale+24(FP), X0
	VBROADCASTSD X0, Y0
	MOVQ         $0x4338000000000000, AX
	MOVQ         AX, X3
	VBROADCASTSD X3, Y3
	MOVBLZX      add+32(FP), BX

loop:
	CMPQ      CX, $8
	JLT       done
	VCVTPS2PD (SI), Y1
	VCVTPS2PD 16(SI), Y2
	VMULPD    Y0, Y1, Y1
	VMULPD    Y0, Y2, Y2
	VADDPD    Y3, Y1, Y1
	VADDPD    Y3, Y2, Y2
	VPSUBQ    Y3, Y1, Y1
	VPSUBQ    Y3, Y2, Y2
	TESTQ     BX, BX
	JZ        store
	VPADDQ    (DI), Y1, Y1
	VPADDQ    32(DI), Y2, Y2

store:
	VMOVDQU Y1, (DI)
	VMOVDQU Y2, 32(DI)
	ADDQ    $32, SI
	ADDQ    $64, DI
	SUBQ    $8, CX
	JMP     loop

done:
	VZEROUPPER
	RET

// func floatFromFixedAVX2(dst *float32, acc *int64, n int, scale float64)
// dst[i] = float32(float64(acc[i]) * scale) for i < n, n a multiple of 8 and
// |acc[i]| < 2^51: adding the bits of 1.5·2^52 and subtracting it as a
// float64 converts exactly; the product and the narrowing round to nearest
// even, as Go's do.
TEXT ·floatFromFixedAVX2(SB), NOSPLIT, $0-32
	MOVQ         dst+0(FP), DI
	MOVQ         acc+8(FP), SI
	MOVQ         n+16(FP), CX
	MOVSD        scale+24(FP), X0
	VBROADCASTSD X0, Y0
	MOVQ         $0x4338000000000000, AX
	MOVQ         AX, X3
	VBROADCASTSD X3, Y3

loop:
	CMPQ       CX, $8
	JLT        done
	VMOVDQU    (SI), Y1
	VMOVDQU    32(SI), Y2
	VPADDQ     Y3, Y1, Y1
	VPADDQ     Y3, Y2, Y2
	VSUBPD     Y3, Y1, Y1
	VSUBPD     Y3, Y2, Y2
	VMULPD     Y0, Y1, Y1
	VMULPD     Y0, Y2, Y2
	VCVTPD2PSY Y1, X1
	VCVTPD2PSY Y2, X2
	VMOVUPS    X1, (DI)
	VMOVUPS    X2, 16(DI)
	ADDQ       $64, SI
	ADDQ       $32, DI
	SUBQ       $8, CX
	JMP        loop

done:
	VZEROUPPER
	RET
