//go:build amd64 && !noasm && (!cgo || gogemm)

#include "textflag.h"

// The AVX-512 micro-kernel of the blocked Sgemm (sgemm_blocked.go): a 8×32
// tile of C, held in 16 zmm accumulators (Z0..Z15, two per row), is the sum
// over p of a 8-vector of packed A times a 32-vector of packed B, one fused
// multiply-add per lane and p, p in order. It needs AVX512F alone. Every C
// element takes the same roundings as in the AVX2 kernel
// (kernel_avx2_amd64.s): from zero, one fused multiply-add per p, then a
// product with alpha, then beta*C added by one fused multiply-add. So the two
// kernels agree bit for bit, and neither the tile, the block nor the thread
// that computes an element changes it.

// STEP multiplies column i of the packed A sliver (8 floats at AX+32i) by
// row i of the packed B sliver (32 floats at BX+128i) into the accumulators.
#define STEP(i) \
	VMOVUPS      (128*i)(BX), Z16;    \
	VMOVUPS      (128*i+64)(BX), Z17; \
	VBROADCASTSS (32*i)(AX), Z18;     \
	VBROADCASTSS (32*i+4)(AX), Z19;   \
	VFMADD231PS  Z16, Z18, Z0;        \
	VFMADD231PS  Z17, Z18, Z1;        \
	VFMADD231PS  Z16, Z19, Z2;        \
	VFMADD231PS  Z17, Z19, Z3;        \
	VBROADCASTSS (32*i+8)(AX), Z20;   \
	VBROADCASTSS (32*i+12)(AX), Z21;  \
	VFMADD231PS  Z16, Z20, Z4;        \
	VFMADD231PS  Z17, Z20, Z5;        \
	VFMADD231PS  Z16, Z21, Z6;        \
	VFMADD231PS  Z17, Z21, Z7;        \
	VBROADCASTSS (32*i+16)(AX), Z18;  \
	VBROADCASTSS (32*i+20)(AX), Z19;  \
	VFMADD231PS  Z16, Z18, Z8;        \
	VFMADD231PS  Z17, Z18, Z9;        \
	VFMADD231PS  Z16, Z19, Z10;       \
	VFMADD231PS  Z17, Z19, Z11;       \
	VBROADCASTSS (32*i+24)(AX), Z20;  \
	VBROADCASTSS (32*i+28)(AX), Z21;  \
	VFMADD231PS  Z16, Z20, Z12;       \
	VFMADD231PS  Z17, Z20, Z13;       \
	VFMADD231PS  Z16, Z21, Z14;       \
	VFMADD231PS  Z17, Z21, Z15

// SCALE multiplies one row's accumulators (lo, hi) by alpha (Z30).
#define SCALE(lo, hi) \
	VMULPS Z30, lo, lo; \
	VMULPS Z30, hi, hi

// LOADC adds beta (Z31) times the C row at R10 to a row's accumulators and
// moves R10 to the next row.
#define LOADC(lo, hi) \
	VFMADD231PS (R10), Z31, lo;   \
	VFMADD231PS 64(R10), Z31, hi; \
	ADDQ        SI, R10

// STOREC stores a row's accumulators at R10 and moves R10 to the next row.
#define STOREC(lo, hi) \
	VMOVUPS lo, (R10);   \
	VMOVUPS hi, 64(R10); \
	ADDQ    SI, R10

// PREFETCHC warms the C row at R10 and moves R10 to the next row.
#define PREFETCHC \
	PREFETCHT0 (R10);   \
	PREFETCHT0 64(R10); \
	ADDQ       SI, R10

// func panelAVX512(k, tiles int, a, b, c *float32, ldc int, alpha, beta float32, load bool)
//
// For t < tiles, C[8t:8t+8, 0:32] = alpha*A_t·B + (load ? beta*C : 0),
// where A_t is the t-th packed 8×k sliver of a (8k floats, column p at
// 8p), B the packed k×32 sliver at b (row p at 32p), and C's rows are ldc
// floats apart. k ≥ 1. With load, beta*C is added by one fused multiply-add
// per element.
TEXT ·panelAVX512(SB), NOSPLIT, $0-57
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
	MOVQ DX, R10
	PREFETCHC
	PREFETCHC
	PREFETCHC
	PREFETCHC
	PREFETCHC
	PREFETCHC
	PREFETCHC
	PREFETCHC

	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15

loop4:
	CMPQ CX, $4
	JLT  tail
	STEP(0)
	STEP(1)
	STEP(2)
	STEP(3)
	ADDQ $128, AX
	ADDQ $512, BX
	SUBQ $4, CX
	JMP  loop4

tail:
	TESTQ CX, CX
	JZ    epilogue
	STEP(0)
	ADDQ  $32, AX
	ADDQ  $128, BX
	DECQ  CX
	JMP   tail

epilogue:
	VBROADCASTSS alpha+48(FP), Z30
	SCALE(Z0, Z1)
	SCALE(Z2, Z3)
	SCALE(Z4, Z5)
	SCALE(Z6, Z7)
	SCALE(Z8, Z9)
	SCALE(Z10, Z11)
	SCALE(Z12, Z13)
	SCALE(Z14, Z15)
	TESTQ        R11, R11
	JZ           store
	VBROADCASTSS beta+52(FP), Z31
	MOVQ         DX, R10
	LOADC(Z0, Z1)
	LOADC(Z2, Z3)
	LOADC(Z4, Z5)
	LOADC(Z6, Z7)
	LOADC(Z8, Z9)
	LOADC(Z10, Z11)
	LOADC(Z12, Z13)
	LOADC(Z14, Z15)

store:
	MOVQ DX, R10
	STOREC(Z0, Z1)
	STOREC(Z2, Z3)
	STOREC(Z4, Z5)
	STOREC(Z6, Z7)
	STOREC(Z8, Z9)
	STOREC(Z10, Z11)
	STOREC(Z12, Z13)
	STOREC(Z14, Z15)

	// The next tile: AX already points at the next sliver of A, and R10 at
	// the row of C 8 rows down.
	MOVQ R10, DX
	DECQ DI
	JMP  tile

end:
	VZEROUPPER
	RET
