//go:build amd64 && !noasm

#include "textflag.h"

// func tile4x32(d *float32, a *float32, rows *int32, nmicro int, shift float32, acc *int64, ldacc int, out *float32, unscale float64)
//
// For j < 4 and c < 32, acc[j·ldacc + c] = Σ over the nmicro micro-shards of
// round(2^shift · Σ_k d[4k + j]·a[32k + c]), where micro-shard m is the next
// rows[m] rows of d ([rows][4], packed) and a ([rows][32], packed), its
// float32 sum one chain of fused multiply-adds from zero in order of k,
// scaled exactly (VSCALEFPS) and rounded to the nearest int64, ties to even
// (VCVTPS2QQ under the default MXCSR), and the integers summed exactly.
// With out not nil the integers are not stored: out[j·ldacc + c] gets
// float32(float64(integer) · unscale) instead (exact to float64, below
// 2^53; one rounding), as a sum that needs no other rank's is finished.
//
// Z0–Z7: the float32 tile (row j: Z2j columns 0–15, Z2j+1 columns 16–31);
// Z8, Z9 and Z14, Z15: rows of a (two k at a time); Z10–Z13: broadcasts,
// then conversion scratch; Z14: the shift while converting; Z16–Z31: the
// integers (row j, columns 8q..8q+7: Z16+4j+q).
// KSTEP is one k: the 32 values of a row of a at aoff(SI) into za and zb,
// the 4 of a row of d at doff(DI) broadcast, 8 fused multiply-adds.
#define KSTEP(aoff, doff, za, zb) \
	VMOVUPS      aoff(SI), za;           \
	VMOVUPS      aoff+64(SI), zb;        \
	VBROADCASTSS doff(DI), Z10;          \
	VBROADCASTSS doff+4(DI), Z11;        \
	VBROADCASTSS doff+8(DI), Z12;        \
	VBROADCASTSS doff+12(DI), Z13;       \
	VFMADD231PS  Z10, za, Z0;            \
	VFMADD231PS  Z10, zb, Z1;            \
	VFMADD231PS  Z11, za, Z2;            \
	VFMADD231PS  Z11, zb, Z3;            \
	VFMADD231PS  Z12, za, Z4;            \
	VFMADD231PS  Z12, zb, Z5;            \
	VFMADD231PS  Z13, za, Z6;            \
	VFMADD231PS  Z13, zb, Z7

// FIX adds the 16 floats of zf, scaled by 2^Z14 and rounded, to the
// integers of q0 (the low 8) and q1 (the high 8).
#define FIX(zf, yf, q0, q1) \
	VSCALEFPS     Z14, zf, zf;  \
	VCVTPS2QQ     yf, Z10;      \
	VEXTRACTF32X8 $1, zf, Y11;  \
	VCVTPS2QQ     Y11, Z11;     \
	VPADDQ        Z10, q0, q0;  \
	VPADDQ        Z11, q1, q1

// STOREI stores the 32 integers of a row of the tile at R12.
#define STOREI(q0, q1, q2, q3) \
	VMOVDQU64 q0, 0(R12);   \
	VMOVDQU64 q1, 64(R12);  \
	VMOVDQU64 q2, 128(R12); \
	VMOVDQU64 q3, 192(R12)

// UNFIX stores float32(float64(q)·Z0) of the 8 integers of q at off(R14).
#define UNFIX(q, y, off) \
	VCVTQQ2PD q, q;     \
	VMULPD    Z0, q, q; \
	VCVTPD2PS q, y;     \
	VMOVUPS   y, off(R14)

TEXT ·tile4x32(SB), NOSPLIT, $0-72
	MOVQ d+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ rows+16(FP), R10
	MOVQ nmicro+24(FP), R11
	MOVQ acc+40(FP), R12
	MOVQ ldacc+48(FP), R13
	SHLQ $3, R13
	VPXORQ Z16, Z16, Z16
	VPXORQ Z17, Z17, Z17
	VPXORQ Z18, Z18, Z18
	VPXORQ Z19, Z19, Z19
	VPXORQ Z20, Z20, Z20
	VPXORQ Z21, Z21, Z21
	VPXORQ Z22, Z22, Z22
	VPXORQ Z23, Z23, Z23
	VPXORQ Z24, Z24, Z24
	VPXORQ Z25, Z25, Z25
	VPXORQ Z26, Z26, Z26
	VPXORQ Z27, Z27, Z27
	VPXORQ Z28, Z28, Z28
	VPXORQ Z29, Z29, Z29
	VPXORQ Z30, Z30, Z30
	VPXORQ Z31, Z31, Z31

micro:
	TESTQ R11, R11
	JZ    store
	MOVLQSX (R10), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	SUBQ $2, CX
	JLT  kone

ktwo:
	KSTEP(0, 0, Z8, Z9)
	KSTEP(128, 16, Z14, Z15)
	ADDQ $256, SI
	ADDQ $32, DI
	SUBQ $2, CX
	JGE  ktwo

kone:
	ADDQ $2, CX
	JZ   convert
	KSTEP(0, 0, Z8, Z9)
	ADDQ $128, SI
	ADDQ $16, DI

convert:
	VBROADCASTSS shift+32(FP), Z14
	FIX(Z0, Y0, Z16, Z17)
	FIX(Z1, Y1, Z18, Z19)
	FIX(Z2, Y2, Z20, Z21)
	FIX(Z3, Y3, Z22, Z23)
	FIX(Z4, Y4, Z24, Z25)
	FIX(Z5, Y5, Z26, Z27)
	FIX(Z6, Y6, Z28, Z29)
	FIX(Z7, Y7, Z30, Z31)
	ADDQ $4, R10
	DECQ R11
	JMP  micro

store:
	MOVQ  out+56(FP), R14
	TESTQ R14, R14
	JNZ   storefloat
	STOREI(Z16, Z17, Z18, Z19)
	ADDQ R13, R12
	STOREI(Z20, Z21, Z22, Z23)
	ADDQ R13, R12
	STOREI(Z24, Z25, Z26, Z27)
	ADDQ R13, R12
	STOREI(Z28, Z29, Z30, Z31)
	VZEROUPPER
	RET

storefloat:
	VBROADCASTSD unscale+64(FP), Z0
	SHRQ         $1, R13 // a row of float32s is half as many bytes
	UNFIX(Z16, Y16, 0)
	UNFIX(Z17, Y17, 32)
	UNFIX(Z18, Y18, 64)
	UNFIX(Z19, Y19, 96)
	ADDQ R13, R14
	UNFIX(Z20, Y20, 0)
	UNFIX(Z21, Y21, 32)
	UNFIX(Z22, Y22, 64)
	UNFIX(Z23, Y23, 96)
	ADDQ R13, R14
	UNFIX(Z24, Y24, 0)
	UNFIX(Z25, Y25, 32)
	UNFIX(Z26, Y26, 64)
	UNFIX(Z27, Y27, 96)
	ADDQ R13, R14
	UNFIX(Z28, Y28, 0)
	UNFIX(Z29, Y29, 32)
	UNFIX(Z30, Y30, 64)
	UNFIX(Z31, Y31, 96)
	VZEROUPPER
	RET

// func maxAbsBits(v *float32, n int) uint32
//
// The largest of the bits of |v[i]| (v[i] with the sign bit cleared) as
// unsigned integers, for i < n, n a multiple of 64: their order is the
// order of the magnitudes, every NaN above infinity.
TEXT ·maxAbsBits(SB), NOSPLIT, $0-20
	MOVQ         v+0(FP), SI
	MOVQ         n+8(FP), CX
	MOVL         $0x7fffffff, AX
	VPBROADCASTD AX, Z8
	VPXORD       Z0, Z0, Z0
	VPXORD       Z1, Z1, Z1
	VPXORD       Z2, Z2, Z2
	VPXORD       Z3, Z3, Z3

loop:
	TESTQ    CX, CX
	JZ       reduce
	VPANDD   (SI), Z8, Z4
	VPANDD   64(SI), Z8, Z5
	VPANDD   128(SI), Z8, Z6
	VPANDD   192(SI), Z8, Z7
	VPMAXUD  Z4, Z0, Z0
	VPMAXUD  Z5, Z1, Z1
	VPMAXUD  Z6, Z2, Z2
	VPMAXUD  Z7, Z3, Z3
	ADDQ     $256, SI
	SUBQ     $64, CX
	JMP      loop

reduce:
	VPMAXUD       Z1, Z0, Z0
	VPMAXUD       Z3, Z2, Z2
	VPMAXUD       Z2, Z0, Z0
	VEXTRACTI32X8 $1, Z0, Y1
	VPMAXUD       Y1, Y0, Y0
	VEXTRACTI128  $1, Y0, X1
	VPMAXUD       X1, X0, X0
	VPSHUFD       $0x4e, X0, X1
	VPMAXUD       X1, X0, X0
	VPSHUFD       $0xb1, X0, X1
	VPMAXUD       X1, X0, X0
	VMOVD         X0, AX
	MOVL          AX, ret+16(FP)
	VZEROUPPER
	RET
