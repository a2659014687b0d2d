//go:build amd64 && !noasm && (!cgo || gogemm)

#include "textflag.h"

// The AVX2+FMA micro-kernel of the blocked Sgemm (sgemm_blocked.go): a 6×16
// tile of C, held in 12 ymm accumulators (Y0..Y11, two per row), is the sum
// over p of a 6-vector of packed A times a 16-vector of packed B, one fused
// multiply-add per lane and p, p in order. So every C element's sum is the
// same sequence of roundings whatever tile, block or thread computed it.

// STEP multiplies column i of the packed A sliver (6 floats at AX+24i) by row
// i of the packed B sliver (16 floats at BX+64i) into the accumulators.
#define STEP(i) \
	VMOVUPS      (64*i)(BX), Y12;     \
	VMOVUPS      (64*i+32)(BX), Y13;  \
	VBROADCASTSS (24*i)(AX), Y14;     \
	VBROADCASTSS (24*i+4)(AX), Y15;   \
	VFMADD231PS  Y12, Y14, Y0;        \
	VFMADD231PS  Y13, Y14, Y1;        \
	VFMADD231PS  Y12, Y15, Y2;        \
	VFMADD231PS  Y13, Y15, Y3;        \
	VBROADCASTSS (24*i+8)(AX), Y14;   \
	VBROADCASTSS (24*i+12)(AX), Y15;  \
	VFMADD231PS  Y12, Y14, Y4;        \
	VFMADD231PS  Y13, Y14, Y5;        \
	VFMADD231PS  Y12, Y15, Y6;        \
	VFMADD231PS  Y13, Y15, Y7;        \
	VBROADCASTSS (24*i+16)(AX), Y14;  \
	VBROADCASTSS (24*i+20)(AX), Y15;  \
	VFMADD231PS  Y12, Y14, Y8;        \
	VFMADD231PS  Y13, Y14, Y9;        \
	VFMADD231PS  Y12, Y15, Y10;       \
	VFMADD231PS  Y13, Y15, Y11

// SCALE multiplies one row's accumulators (lo, hi) by alpha (Y14).
#define SCALE(lo, hi) \
	VMULPS Y14, lo, lo; \
	VMULPS Y14, hi, hi

// LOADC adds beta (Y15) times the C row at R10 to a row's accumulators and
// moves R10 to the next row.
#define LOADC(lo, hi) \
	VFMADD231PS (R10), Y15, lo;   \
	VFMADD231PS 32(R10), Y15, hi; \
	ADDQ        SI, R10

// STOREC stores a row's accumulators at R10 and moves R10 to the next row.
#define STOREC(lo, hi) \
	VMOVUPS lo, (R10);   \
	VMOVUPS hi, 32(R10); \
	ADDQ    SI, R10

// func panelAVX2(k, tiles int, a, b, c *float32, ldc int, alpha, beta float32, load bool)
//
// For t < tiles, C[6t:6t+6, 0:16] = alpha*A_t·B + (load ? beta*C : 0), where
// A_t is the t-th packed 6×k sliver of a (6k floats, column p at 6p), B the
// packed k×16 sliver at b (row p at 16p), and C's rows are ldc floats apart.
// k ≥ 1. With load, beta*C is added by one fused multiply-add per element.
TEXT ·panelAVX2(SB), NOSPLIT, $0-57
	MOVQ k+0(FP), R9
	MOVQ tiles+8(FP), DI
	MOVQ a+16(FP), AX
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), SI
	SHLQ $2, SI
	MOVBLZX load+56(FP), R11

tile:
	TESTQ DI, DI
	JZ    end
	MOVQ  b+24(FP), BX
	MOVQ  R9, CX

	// Warm the tile of C the epilogue will touch.
	MOVQ       DX, R10
	PREFETCHT0 (R10)
	PREFETCHT0 32(R10)
	ADDQ       SI, R10
	PREFETCHT0 (R10)
	PREFETCHT0 32(R10)
	ADDQ       SI, R10
	PREFETCHT0 (R10)
	PREFETCHT0 32(R10)
	ADDQ       SI, R10
	PREFETCHT0 (R10)
	PREFETCHT0 32(R10)
	ADDQ       SI, R10
	PREFETCHT0 (R10)
	PREFETCHT0 32(R10)
	ADDQ       SI, R10
	PREFETCHT0 (R10)
	PREFETCHT0 32(R10)

	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11

loop4:
	CMPQ CX, $4
	JLT  tail
	STEP(0)
	STEP(1)
	STEP(2)
	STEP(3)
	ADDQ $96, AX
	ADDQ $256, BX
	SUBQ $4, CX
	JMP  loop4

tail:
	TESTQ CX, CX
	JZ    epilogue
	STEP(0)
	ADDQ  $24, AX
	ADDQ  $64, BX
	DECQ  CX
	JMP   tail

epilogue:
	VBROADCASTSS alpha+48(FP), Y14
	SCALE(Y0, Y1)
	SCALE(Y2, Y3)
	SCALE(Y4, Y5)
	SCALE(Y6, Y7)
	SCALE(Y8, Y9)
	SCALE(Y10, Y11)
	TESTQ        R11, R11
	JZ           store
	VBROADCASTSS beta+52(FP), Y15
	MOVQ         DX, R10
	LOADC(Y0, Y1)
	LOADC(Y2, Y3)
	LOADC(Y4, Y5)
	LOADC(Y6, Y7)
	LOADC(Y8, Y9)
	LOADC(Y10, Y11)

store:
	MOVQ DX, R10
	STOREC(Y0, Y1)
	STOREC(Y2, Y3)
	STOREC(Y4, Y5)
	STOREC(Y6, Y7)
	STOREC(Y8, Y9)
	STOREC(Y10, Y11)

	// The next tile: AX already points at the next sliver of A; C moves down
	// 6 rows.
	LEAQ (SI)(SI*2), R10
	LEAQ (DX)(R10*2), DX
	DECQ DI
	JMP  tile

end:
	VZEROUPPER
	RET
