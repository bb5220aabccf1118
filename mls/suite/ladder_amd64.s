//go:build !purego

#include "textflag.h"

// The X25519 ladder's field arithmetic in four 64-bit limbs with the BMI2
// and ADX instructions (ladder_amd64.go says why and when it is used).
//
// An element is a little-endian 256-bit value v in [0, 2^256) standing for
// v mod p, p = 2^255 - 19; 2^256 = 38 (mod p) folds what passes 256 bits.
// Every macro reads its operands at offsets from DI and writes its result
// there; a result may be an operand.
//
// Registers: DI the base, DX the multiplier of MULXQ, AX and BX its
// products, CX zero, R8-R14 and SI the limbs of a product.

// REDUCE folds the 512-bit product in R8-R14, SI (t0..t7) into R8-R11:
// t0..t3 + 38 * t4..t7 leaves a top limb under 40, folded again; a carry
// out of that leaves a value under 2^11, so the last +38 cannot carry.
#define REDUCE \
	MOVQ  $38, DX  \
	XORQ  CX, CX   \
	MULXQ R12, AX, BX \
	ADCXQ AX, R8   \
	ADOXQ BX, R9   \
	MULXQ R13, AX, BX \
	ADCXQ AX, R9   \
	ADOXQ BX, R10  \
	MULXQ R14, AX, BX \
	ADCXQ AX, R10  \
	ADOXQ BX, R11  \
	MULXQ SI, AX, R12 \
	ADCXQ AX, R11  \
	ADOXQ CX, R12  \
	ADCXQ CX, R12  \
	IMUL3Q $38, R12, AX \
	ADDQ  AX, R8   \
	ADCQ  CX, R9   \
	ADCQ  CX, R10  \
	ADCQ  CX, R11  \
	SBBQ  AX, AX   \
	ANDQ  $38, AX  \
	ADDQ  AX, R8

#define STORE(r) \
	MOVQ R8, r+0(DI)   \
	MOVQ R9, r+8(DI)   \
	MOVQ R10, r+16(DI) \
	MOVQ R11, r+24(DI)

// ROW multiplies a by DX and adds the product into the five limbs t0..t4
// starting at the row's place, t4 being new (set to zero here): ADCXQ
// carries the low halves along one chain and ADOXQ the high halves along
// another, so the two run interleaved.
#define ROW(a, t0, t1, t2, t3, t4) \
	XORQ  t4, t4       \
	MULXQ a+0(DI), AX, BX  \
	ADCXQ AX, t0       \
	ADOXQ BX, t1       \
	MULXQ a+8(DI), AX, BX  \
	ADCXQ AX, t1       \
	ADOXQ BX, t2       \
	MULXQ a+16(DI), AX, BX \
	ADCXQ AX, t2       \
	ADOXQ BX, t3       \
	MULXQ a+24(DI), AX, BX \
	ADCXQ AX, t3       \
	ADOXQ BX, t4       \
	ADCXQ CX, t4

// MUL sets r = a * b. The product of two values under 2^256 fits in eight
// limbs, so no row carries past its new top limb.
#define MUL(a, b, r) \
	XORQ  CX, CX         \
	MOVQ  b+0(DI), DX    \
	MULXQ a+0(DI), R8, R9   \
	MULXQ a+8(DI), AX, R10  \
	ADDQ  AX, R9         \
	MULXQ a+16(DI), AX, R11 \
	ADCQ  AX, R10        \
	MULXQ a+24(DI), AX, R12 \
	ADCQ  AX, R11        \
	ADCQ  CX, R12        \
	MOVQ  b+8(DI), DX    \
	ROW(a, R9, R10, R11, R12, R13)  \
	MOVQ  b+16(DI), DX   \
	ROW(a, R10, R11, R12, R13, R14) \
	MOVQ  b+24(DI), DX   \
	ROW(a, R11, R12, R13, R14, SI)  \
	REDUCE               \
	STORE(r)

// SQR sets r = a * a: the six cross products once, doubled by a carry
// chain of their own, then the four squares added along the other: 10
// multiplications where MUL takes 16.
#define SQR(a, r) \
	XORQ  CX, CX            \
	MOVQ  a+0(DI), DX       \
	MULXQ a+8(DI), R9, R10  \
	MULXQ a+16(DI), AX, R11 \
	ADCXQ AX, R10           \
	MULXQ a+24(DI), AX, R12 \
	ADCXQ AX, R11           \
	MOVQ  a+8(DI), DX       \
	MULXQ a+24(DI), AX, R13 \
	ADCXQ AX, R12           \
	MOVQ  a+16(DI), DX      \
	MULXQ a+24(DI), AX, R14 \
	ADCXQ AX, R13           \
	ADCXQ CX, R14           \
	MOVQ  a+8(DI), DX       \
	MULXQ a+16(DI), AX, BX  \
	ADDQ  AX, R11           \
	ADCQ  BX, R12           \
	ADCQ  CX, R13           \
	ADCQ  CX, R14           \
	XORQ  SI, SI            \
	ADCXQ R9, R9            \
	ADCXQ R10, R10          \
	ADCXQ R11, R11          \
	ADCXQ R12, R12          \
	ADCXQ R13, R13          \
	ADCXQ R14, R14          \
	ADCXQ SI, SI            \
	MOVQ  a+0(DI), DX       \
	MULXQ DX, R8, AX        \
	ADOXQ AX, R9            \
	MOVQ  a+8(DI), DX       \
	MULXQ DX, AX, BX        \
	ADOXQ AX, R10           \
	ADOXQ BX, R11           \
	MOVQ  a+16(DI), DX      \
	MULXQ DX, AX, BX        \
	ADOXQ AX, R12           \
	ADOXQ BX, R13           \
	MOVQ  a+24(DI), DX      \
	MULXQ DX, AX, BX        \
	ADOXQ AX, R14           \
	ADOXQ BX, SI            \
	REDUCE                  \
	STORE(r)

// ADD sets r = a + b: a carry out of 256 bits is 38 added back, and that
// can carry once more only into a value under 38.
#define ADD(a, b, r) \
	XORQ CX, CX       \
	MOVQ a+0(DI), R8  \
	MOVQ a+8(DI), R9  \
	MOVQ a+16(DI), R10 \
	MOVQ a+24(DI), R11 \
	ADDQ b+0(DI), R8  \
	ADCQ b+8(DI), R9  \
	ADCQ b+16(DI), R10 \
	ADCQ b+24(DI), R11 \
	SBBQ AX, AX       \
	ANDQ $38, AX      \
	ADDQ AX, R8       \
	ADCQ CX, R9       \
	ADCQ CX, R10      \
	ADCQ CX, R11      \
	SBBQ AX, AX       \
	ANDQ $38, AX      \
	ADDQ AX, R8       \
	STORE(r)

// SUB sets r = a - b: a borrow is 38 taken away (2^256 = 38), and a
// second borrow, from a value under 38, leaves limb 0 at least 2^64 - 76,
// from which the last 38 comes without one.
#define SUB(a, b, r) \
	XORQ CX, CX       \
	MOVQ a+0(DI), R8  \
	MOVQ a+8(DI), R9  \
	MOVQ a+16(DI), R10 \
	MOVQ a+24(DI), R11 \
	SUBQ b+0(DI), R8  \
	SBBQ b+8(DI), R9  \
	SBBQ b+16(DI), R10 \
	SBBQ b+24(DI), R11 \
	SBBQ AX, AX       \
	ANDQ $38, AX      \
	SUBQ AX, R8       \
	SBBQ CX, R9       \
	SBBQ CX, R10      \
	SBBQ CX, R11      \
	SBBQ AX, AX       \
	ANDQ $38, AX      \
	SUBQ AX, R8       \
	STORE(r)

// MULA24 sets r = a * 121665, (A - 2) / 4 of Curve25519: the top limb is
// under 2^17, folded as in REDUCE.
#define MULA24(a, r) \
	XORQ  CX, CX         \
	MOVQ  $121665, DX    \
	MULXQ a+0(DI), R8, R9   \
	MULXQ a+8(DI), AX, R10  \
	ADDQ  AX, R9         \
	MULXQ a+16(DI), AX, R11 \
	ADCQ  AX, R10        \
	MULXQ a+24(DI), AX, R12 \
	ADCQ  AX, R11        \
	ADCQ  CX, R12        \
	IMUL3Q $38, R12, AX  \
	ADDQ  AX, R8         \
	ADCQ  CX, R9         \
	ADCQ  CX, R10        \
	ADCQ  CX, R11        \
	SBBQ  AX, AX         \
	ANDQ  $38, AX        \
	ADDQ  AX, R8         \
	STORE(r)

// Offsets of ladderState's fields.
#define X1 0
#define X2 32
#define Z2 64
#define X3 96
#define Z3 128
#define TA 160
#define TB 192
#define TC 224
#define TD 256

// func ladderStepADX(s *ladderState)
//
// One step of RFC 7748 §5's ladder on (x_2 : z_2) and (x_3 : z_3), the
// swap done by the caller, in the order of x25519Ladder's generic step.
TEXT ·ladderStepADX(SB), NOSPLIT, $0-8
	MOVQ s+0(FP), DI
	ADD(X2, Z2, TA)   // A
	SUB(X2, Z2, TB)   // B
	ADD(X3, Z3, TC)   // C
	SUB(X3, Z3, TD)   // D
	MUL(TD, TA, TD)   // DA
	SQR(TA, TA)       // AA
	MUL(TC, TB, TC)   // CB
	SQR(TB, TB)       // BB
	ADD(TD, TC, X3)
	SUB(TD, TC, Z3)
	MUL(TA, TB, X2)   // x_2 = AA * BB
	SUB(TA, TB, TB)   // E
	SQR(X3, X3)       // x_3 = (DA + CB)^2
	SQR(Z3, Z3)
	MULA24(TB, Z2)    // a24 * E
	ADD(Z2, TA, Z2)
	MUL(Z3, X1, Z3)   // z_3 = x_1 * (DA - CB)^2
	MUL(Z2, TB, Z2)   // z_2 = E * (AA + a24 * E)
	RET

// func fieldOpADX(op int, s *ladderState)
//
// One operation on s's fields for the tests: 0 x_2 = x_1 * z_2, 1 x_2 =
// x_1 + z_2, 2 x_2 = x_1 - z_2, 3 x_2 = x_1 * 121665, 4 x_2 = x_1^2.
TEXT ·fieldOpADX(SB), NOSPLIT, $0-16
	MOVQ op+0(FP), AX
	MOVQ s+8(FP), DI
	CMPQ AX, $0
	JEQ  mul
	CMPQ AX, $1
	JEQ  add
	CMPQ AX, $2
	JEQ  sub
	CMPQ AX, $4
	JEQ  sqr
	MULA24(X1, X2)
	RET
mul:
	MUL(X1, Z2, X2)
	RET
add:
	ADD(X1, Z2, X2)
	RET
sub:
	SUB(X1, Z2, X2)
	RET
sqr:
	SQR(X1, X2)
	RET
