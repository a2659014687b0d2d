//go:build amd64 && !noasm && (!cgo || gogemm)

#include "textflag.h"

// Packing of op(B) into the slivers the micro-kernels read: 16 columns wide
// for the AVX2 kernel, 32 for the AVX-512 one. AVX2 is all it takes.

// TRANSPOSE8 transposes the 8×8 block in Y0..Y7 (row i in Yi) into Y8..Y15
// (column q in Y(8+q)), through unpacks within 64-bit pairs, shuffles within
// 128-bit lanes and a swap of lanes.
#define TRANSPOSE8 \
	VUNPCKLPS  Y1, Y0, Y8;         \
	VUNPCKHPS  Y1, Y0, Y9;         \
	VUNPCKLPS  Y3, Y2, Y10;        \
	VUNPCKHPS  Y3, Y2, Y11;        \
	VUNPCKLPS  Y5, Y4, Y12;        \
	VUNPCKHPS  Y5, Y4, Y13;        \
	VUNPCKLPS  Y7, Y6, Y14;        \
	VUNPCKHPS  Y7, Y6, Y15;        \
	VSHUFPS    $0x44, Y10, Y8, Y0; \
	VSHUFPS    $0xEE, Y10, Y8, Y1; \
	VSHUFPS    $0x44, Y11, Y9, Y2; \
	VSHUFPS    $0xEE, Y11, Y9, Y3; \
	VSHUFPS    $0x44, Y14, Y12, Y4; \
	VSHUFPS    $0xEE, Y14, Y12, Y5; \
	VSHUFPS    $0x44, Y15, Y13, Y6; \
	VSHUFPS    $0xEE, Y15, Y13, Y7; \
	VPERM2F128 $0x20, Y4, Y0, Y8;  \
	VPERM2F128 $0x20, Y5, Y1, Y9;  \
	VPERM2F128 $0x20, Y6, Y2, Y10; \
	VPERM2F128 $0x20, Y7, Y3, Y11; \
	VPERM2F128 $0x31, Y4, Y0, Y12; \
	VPERM2F128 $0x31, Y5, Y1, Y13; \
	VPERM2F128 $0x31, Y6, Y2, Y14; \
	VPERM2F128 $0x31, Y7, Y3, Y15

// LOAD8 loads 8 floats from each of the 8 rows starting at base (rows DX
// bytes apart, R9 = 3*DX) into Y0..Y7.
#define LOAD8(base) \
	VMOVUPS (base), Y0;        \
	VMOVUPS (base)(DX*1), Y1;  \
	VMOVUPS (base)(DX*2), Y2;  \
	VMOVUPS (base)(R9*1), Y3;  \
	LEAQ    (base)(DX*4), R11; \
	VMOVUPS (R11), Y4;         \
	VMOVUPS (R11)(DX*1), Y5;   \
	VMOVUPS (R11)(DX*2), Y6;   \
	VMOVUPS (R11)(R9*1), Y7

// STORE8 stores columns Y8..Y15 as rows 64 bytes apart from off(DI).
#define STORE8(off) \
	VMOVUPS Y8, (off)(DI);      \
	VMOVUPS Y9, (64+off)(DI);   \
	VMOVUPS Y10, (128+off)(DI); \
	VMOVUPS Y11, (192+off)(DI); \
	VMOVUPS Y12, (256+off)(DI); \
	VMOVUPS Y13, (320+off)(DI); \
	VMOVUPS Y14, (384+off)(DI); \
	VMOVUPS Y15, (448+off)(DI)

// STORE8W stores columns Y8..Y15 as rows 128 bytes apart from off(DI).
#define STORE8W(off) \
	VMOVUPS Y8, (off)(DI);      \
	VMOVUPS Y9, (128+off)(DI);  \
	VMOVUPS Y10, (256+off)(DI); \
	VMOVUPS Y11, (384+off)(DI); \
	VMOVUPS Y12, (512+off)(DI); \
	VMOVUPS Y13, (640+off)(DI); \
	VMOVUPS Y14, (768+off)(DI); \
	VMOVUPS Y15, (896+off)(DI)

// func packTrans16(dst, src *float32, ld, k int)
//
// dst[16p+j] = src[j*ld+p] for j < 16 and p < k, k a multiple of 8: 16 rows
// of a row-major matrix, ld floats apart, become a 16-column sliver.
TEXT ·packTrans16(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), DX
	MOVQ k+24(FP), CX
	SHLQ $2, DX
	LEAQ (DX)(DX*2), R9
	LEAQ (SI)(DX*8), R10 // rows 8..15

loop:
	CMPQ CX, $8
	JLT  done
	LOAD8(SI)
	TRANSPOSE8
	STORE8(0)
	LOAD8(R10)
	TRANSPOSE8
	STORE8(32)
	ADDQ $32, SI
	ADDQ $32, R10
	ADDQ $512, DI
	SUBQ $8, CX
	JMP  loop

done:
	VZEROUPPER
	RET

// func packCopy16(dst, src *float32, ld, k int)
//
// dst[16p+j] = src[p*ld+j] for j < 16 and p < k: 16 columns of k rows of a
// row-major matrix, ld floats apart, become a 16-column sliver.
TEXT ·packCopy16(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), DX
	MOVQ k+24(FP), CX
	SHLQ $2, DX

loop2:
	CMPQ    CX, $2
	JLT     tail
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS (SI)(DX*1), Y2
	VMOVUPS 32(SI)(DX*1), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	LEAQ    (SI)(DX*2), SI
	ADDQ    $128, DI
	SUBQ    $2, CX
	JMP     loop2

tail:
	TESTQ   CX, CX
	JZ      done
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)

done:
	VZEROUPPER
	RET

// func packTrans32(dst, src *float32, ld, k int)
//
// dst[32p+j] = src[j*ld+p] for j < 32 and p < k, k a multiple of 8: 32 rows
// of a row-major matrix, ld floats apart, become a 32-column sliver.
TEXT ·packTrans32(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), DX
	MOVQ k+24(FP), CX
	SHLQ $2, DX
	LEAQ (DX)(DX*2), R9

loop32:
	CMPQ CX, $8
	JLT  done32
	MOVQ SI, R10
	LOAD8(R10)
	TRANSPOSE8
	STORE8W(0)
	LEAQ (R10)(DX*8), R10 // rows 8..15
	LOAD8(R10)
	TRANSPOSE8
	STORE8W(32)
	LEAQ (R10)(DX*8), R10 // rows 16..23
	LOAD8(R10)
	TRANSPOSE8
	STORE8W(64)
	LEAQ (R10)(DX*8), R10 // rows 24..31
	LOAD8(R10)
	TRANSPOSE8
	STORE8W(96)
	ADDQ $32, SI
	ADDQ $1024, DI
	SUBQ $8, CX
	JMP  loop32

done32:
	VZEROUPPER
	RET

// func packCopy32(dst, src *float32, ld, k int)
//
// dst[32p+j] = src[p*ld+j] for j < 32 and p < k: 32 columns of k rows of a
// row-major matrix, ld floats apart, become a 32-column sliver.
TEXT ·packCopy32(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), DX
	MOVQ k+24(FP), CX
	SHLQ $2, DX

copy32:
	TESTQ   CX, CX
	JZ      copied32
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    DX, SI
	ADDQ    $128, DI
	DECQ    CX
	JMP     copy32

copied32:
	VZEROUPPER
	RET

// func packRows8(dst, src *float32, ld, k int)
//
// dst[8p+r] = src[r*ld+p] for r < 8 and p < k, k a multiple of 8: 8 rows of
// a row-major matrix, ld floats apart, become an 8-row sliver of op(A) for
// the AVX-512 kernel.
TEXT ·packRows8(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ld+16(FP), DX
	MOVQ k+24(FP), CX
	SHLQ $2, DX
	LEAQ (DX)(DX*2), R9

rows8:
	CMPQ    CX, $8
	JLT     done8
	LOAD8(SI)
	TRANSPOSE8
	VMOVUPS Y8, (DI)
	VMOVUPS Y9, 32(DI)
	VMOVUPS Y10, 64(DI)
	VMOVUPS Y11, 96(DI)
	VMOVUPS Y12, 128(DI)
	VMOVUPS Y13, 160(DI)
	VMOVUPS Y14, 192(DI)
	VMOVUPS Y15, 224(DI)
	ADDQ    $32, SI
	ADDQ    $256, DI
	SUBQ    $8, CX
	JMP     rows8

done8:
	VZEROUPPER
	RET
