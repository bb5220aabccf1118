//go:build !purego

#include "textflag.h"

// Eight X25519 ladders at once with AVX-512 IFMA (ladder8.go says why and
// when it is used).
//
// A ZMM register holds one limb of eight field elements, one a lane; an
// element is five limbs of radix 2^51 (v = sum of l_i 2^(51 i)), in the
// memory of ladder8State limb by limb, 64 bytes a limb. VPMADD52LUQ and
// VPMADD52HUQ multiply the low 52 bits of two limbs and add the low or
// the high 52 bits of the 104-bit product: every limb that enters a
// multiplication must be under 2^52, and every result leaves under
// 2^51 + 2^16 (CARRY), so the sum of two is carried again before it is
// multiplied.
//
// Registers: DI the state; Z31 the mask 2^51 - 1, Z30 and Z29 the limbs of
// 2p (2^52 - 38 and 2^52 - 2), Z28 ones, Z27 121665, Z25 zero, Z24 the
// previous bit of every lane's scalar, Z23 the swap mask; Z0-Z22 scratch.

// Offsets of ladder8State's fields: the scalars' 64-bit words, then the
// elements, 320 bytes each.
#define OX1 256
#define OX2 576
#define OZ2 896
#define OX3 1216
#define OZ3 1536
#define OTA 1856
#define OTB 2176
#define OTC 2496
#define OTD 2816

// MUL19ADD adds 19 x to d, as 16 x + 2 x + x; t and u are scratch.
#define MUL19ADD(x, d, t, u) \
	VPSLLQ $4, x, t  \
	VPSLLQ $1, x, u  \
	VPADDQ u, t, t   \
	VPADDQ x, t, t   \
	VPADDQ t, d, d

// CARRY brings the limbs z0-z4, each under 2^63, to under 2^51 + 2^16:
// each limb's bits from 51 up go to the next limb at once (not one after
// another: a shorter chain), the top one's times 19 (2^255 = 19 mod p).
// The carries are under 2^12, so limbs 1-4 end under 2^51 + 2^12 and limb
// 0 under 2^51 + 19 * 2^12. t0-t4 and u are scratch.
#define CARRY(z0, z1, z2, z3, z4, t0, t1, t2, t3, t4, u) \
	VPSRLQ $51, z0, t0 \
	VPSRLQ $51, z1, t1 \
	VPSRLQ $51, z2, t2 \
	VPSRLQ $51, z3, t3 \
	VPSRLQ $51, z4, t4 \
	VPANDQ Z31, z0, z0 \
	VPANDQ Z31, z1, z1 \
	VPANDQ Z31, z2, z2 \
	VPANDQ Z31, z3, z3 \
	VPANDQ Z31, z4, z4 \
	VPADDQ t0, z1, z1  \
	VPADDQ t1, z2, z2  \
	VPADDQ t2, z3, z3  \
	VPADDQ t3, z4, z4  \
	MUL19ADD(t4, z0, t0, u)

#define LOAD(a, z0, z1, z2, z3, z4) \
	VMOVDQU64 a+0(DI), z0   \
	VMOVDQU64 a+64(DI), z1  \
	VMOVDQU64 a+128(DI), z2 \
	VMOVDQU64 a+192(DI), z3 \
	VMOVDQU64 a+256(DI), z4

#define STORE(z0, z1, z2, z3, z4, r) \
	VMOVDQU64 z0, r+0(DI)   \
	VMOVDQU64 z1, r+64(DI)  \
	VMOVDQU64 z2, r+128(DI) \
	VMOVDQU64 z3, r+192(DI) \
	VMOVDQU64 z4, r+256(DI)

// ROW adds limb off of a times each limb of b (in Z0-Z4): the low halves
// of the products to l0-l4, the high halves to h0-h4, each one place up
// from its low half.
#define ROW(a, off, l0, l1, l2, l3, l4, h0, h1, h2, h3, h4) \
	VPMADD52LUQ a+off(DI), Z0, l0 \
	VPMADD52HUQ a+off(DI), Z0, h0 \
	VPMADD52LUQ a+off(DI), Z1, l1 \
	VPMADD52HUQ a+off(DI), Z1, h1 \
	VPMADD52LUQ a+off(DI), Z2, l2 \
	VPMADD52HUQ a+off(DI), Z2, h2 \
	VPMADD52LUQ a+off(DI), Z3, l3 \
	VPMADD52HUQ a+off(DI), Z3, h3 \
	VPMADD52LUQ a+off(DI), Z4, l4 \
	VPMADD52HUQ a+off(DI), Z4, h4

// ZEROPLACES clears the places of a product, Z5-Z22.
#define ZEROPLACES \
	VPXORQ Z5, Z5, Z5    \
	VPXORQ Z6, Z6, Z6    \
	VPXORQ Z7, Z7, Z7    \
	VPXORQ Z8, Z8, Z8    \
	VPXORQ Z9, Z9, Z9    \
	VPXORQ Z10, Z10, Z10 \
	VPXORQ Z11, Z11, Z11 \
	VPXORQ Z12, Z12, Z12 \
	VPXORQ Z13, Z13, Z13 \
	VPXORQ Z14, Z14, Z14 \
	VPXORQ Z15, Z15, Z15 \
	VPXORQ Z16, Z16, Z16 \
	VPXORQ Z17, Z17, Z17 \
	VPXORQ Z18, Z18, Z18 \
	VPXORQ Z19, Z19, Z19 \
	VPXORQ Z20, Z20, Z20 \
	VPXORQ Z21, Z21, Z21 \
	VPXORQ Z22, Z22, Z22

// MUL sets r = a * b. The product's place k (weight 2^(51 k)) gathers in
// Z5+k the low halves of the limb products a_i b_j with i + j = k, and in
// Z13+k the high halves of those with i + j = k - 1; a high half weighs
// 2^52 = 2 * 2^51 at its place, so place k is Z5+k + 2 Z13+k. Each place
// is under 5 * 2^52 + 2 * 5 * 2^52 < 2^56, and places 5-9 fold into 0-4
// times 19: under 20 * 2^56 < 2^61. r may be a or b.
#define MUL(a, b, r) \
	LOAD(b, Z0, Z1, Z2, Z3, Z4) \
	ZEROPLACES \
	ROW(a, 0, Z5, Z6, Z7, Z8, Z9, Z14, Z15, Z16, Z17, Z18)     \
	ROW(a, 64, Z6, Z7, Z8, Z9, Z10, Z15, Z16, Z17, Z18, Z19)   \
	ROW(a, 128, Z7, Z8, Z9, Z10, Z11, Z16, Z17, Z18, Z19, Z20) \
	ROW(a, 192, Z8, Z9, Z10, Z11, Z12, Z17, Z18, Z19, Z20, Z21) \
	ROW(a, 256, Z9, Z10, Z11, Z12, Z13, Z18, Z19, Z20, Z21, Z22) \
	FINISH(r)

// SQR sets r = a * a: the ten products a_i a_j with i < j once, in
// Z14-Z22 as MUL lays them out, doubled, and the five squares a_i a_i
// added: 15 limb products where MUL takes 25.
#define SQR(a, r) \
	LOAD(a, Z0, Z1, Z2, Z3, Z4) \
	ZEROPLACES \
	VPMADD52LUQ Z0, Z1, Z6   \
	VPMADD52HUQ Z0, Z1, Z15  \
	VPMADD52LUQ Z0, Z2, Z7   \
	VPMADD52HUQ Z0, Z2, Z16  \
	VPMADD52LUQ Z0, Z3, Z8   \
	VPMADD52HUQ Z0, Z3, Z17  \
	VPMADD52LUQ Z0, Z4, Z9   \
	VPMADD52HUQ Z0, Z4, Z18  \
	VPMADD52LUQ Z1, Z2, Z8   \
	VPMADD52HUQ Z1, Z2, Z17  \
	VPMADD52LUQ Z1, Z3, Z9   \
	VPMADD52HUQ Z1, Z3, Z18  \
	VPMADD52LUQ Z1, Z4, Z10  \
	VPMADD52HUQ Z1, Z4, Z19  \
	VPMADD52LUQ Z2, Z3, Z10  \
	VPMADD52HUQ Z2, Z3, Z19  \
	VPMADD52LUQ Z2, Z4, Z11  \
	VPMADD52HUQ Z2, Z4, Z20  \
	VPMADD52LUQ Z3, Z4, Z12  \
	VPMADD52HUQ Z3, Z4, Z21  \
	VPADDQ Z6, Z6, Z6    \
	VPADDQ Z7, Z7, Z7    \
	VPADDQ Z8, Z8, Z8    \
	VPADDQ Z9, Z9, Z9    \
	VPADDQ Z10, Z10, Z10 \
	VPADDQ Z11, Z11, Z11 \
	VPADDQ Z12, Z12, Z12 \
	VPADDQ Z15, Z15, Z15 \
	VPADDQ Z16, Z16, Z16 \
	VPADDQ Z17, Z17, Z17 \
	VPADDQ Z18, Z18, Z18 \
	VPADDQ Z19, Z19, Z19 \
	VPADDQ Z20, Z20, Z20 \
	VPADDQ Z21, Z21, Z21 \
	VPMADD52LUQ Z0, Z0, Z5   \
	VPMADD52HUQ Z0, Z0, Z14  \
	VPMADD52LUQ Z1, Z1, Z7   \
	VPMADD52HUQ Z1, Z1, Z16  \
	VPMADD52LUQ Z2, Z2, Z9   \
	VPMADD52HUQ Z2, Z2, Z18  \
	VPMADD52LUQ Z3, Z3, Z11  \
	VPMADD52HUQ Z3, Z3, Z20  \
	VPMADD52LUQ Z4, Z4, Z13  \
	VPMADD52HUQ Z4, Z4, Z22  \
	FINISH(r)

// FINISH adds each place's high halves (doubled) to its low ones, folds
// places 5-9 into 0-4, carries and stores the result in r.
#define FINISH(r) \
	VPADDQ Z14, Z14, Z14 \
	VPADDQ Z15, Z15, Z15 \
	VPADDQ Z16, Z16, Z16 \
	VPADDQ Z17, Z17, Z17 \
	VPADDQ Z18, Z18, Z18 \
	VPADDQ Z19, Z19, Z19 \
	VPADDQ Z20, Z20, Z20 \
	VPADDQ Z21, Z21, Z21 \
	VPADDQ Z22, Z22, Z22 \
	VPADDQ Z14, Z6, Z6   \
	VPADDQ Z15, Z7, Z7   \
	VPADDQ Z16, Z8, Z8   \
	VPADDQ Z17, Z9, Z9   \
	VPADDQ Z18, Z10, Z10 \
	VPADDQ Z19, Z11, Z11 \
	VPADDQ Z20, Z12, Z12 \
	VPADDQ Z21, Z13, Z13 \
	MUL19ADD(Z10, Z5, Z14, Z15) \
	MUL19ADD(Z11, Z6, Z16, Z17) \
	MUL19ADD(Z12, Z7, Z18, Z19) \
	MUL19ADD(Z13, Z8, Z20, Z21) \
	MUL19ADD(Z22, Z9, Z14, Z15) \
	CARRY(Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15) \
	STORE(Z5, Z6, Z7, Z8, Z9, r)

// ADD sets r = a + b, carried.
#define ADD(a, b, r) \
	LOAD(a, Z0, Z1, Z2, Z3, Z4) \
	VPADDQ b+0(DI), Z0, Z0   \
	VPADDQ b+64(DI), Z1, Z1  \
	VPADDQ b+128(DI), Z2, Z2 \
	VPADDQ b+192(DI), Z3, Z3 \
	VPADDQ b+256(DI), Z4, Z4 \
	CARRY(Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10) \
	STORE(Z0, Z1, Z2, Z3, Z4, r)

// SUB sets r = a - b + 2p, carried: each limb of b is under the limb of
// 2p it is taken from, so none goes below zero.
#define SUB(a, b, r) \
	LOAD(a, Z0, Z1, Z2, Z3, Z4) \
	VPADDQ Z30, Z0, Z0       \
	VPADDQ Z29, Z1, Z1       \
	VPADDQ Z29, Z2, Z2       \
	VPADDQ Z29, Z3, Z3       \
	VPADDQ Z29, Z4, Z4       \
	VPSUBQ b+0(DI), Z0, Z0   \
	VPSUBQ b+64(DI), Z1, Z1  \
	VPSUBQ b+128(DI), Z2, Z2 \
	VPSUBQ b+192(DI), Z3, Z3 \
	VPSUBQ b+256(DI), Z4, Z4 \
	CARRY(Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10) \
	STORE(Z0, Z1, Z2, Z3, Z4, r)

// MULA24ADD sets r = a + 121665 e ((A - 2) / 4 of Curve25519, in Z27):
// the low halves of the limb products go to their places over a's limbs,
// the high halves (under 2^17) one place up, doubled.
#define MULA24ADD(e, a, r) \
	LOAD(a, Z0, Z1, Z2, Z3, Z4) \
	VPXORQ Z5, Z5, Z5 \
	VPXORQ Z6, Z6, Z6 \
	VPXORQ Z7, Z7, Z7 \
	VPXORQ Z8, Z8, Z8 \
	VPXORQ Z9, Z9, Z9 \
	VPMADD52LUQ e+0(DI), Z27, Z0   \
	VPMADD52HUQ e+0(DI), Z27, Z5   \
	VPMADD52LUQ e+64(DI), Z27, Z1  \
	VPMADD52HUQ e+64(DI), Z27, Z6  \
	VPMADD52LUQ e+128(DI), Z27, Z2 \
	VPMADD52HUQ e+128(DI), Z27, Z7 \
	VPMADD52LUQ e+192(DI), Z27, Z3 \
	VPMADD52HUQ e+192(DI), Z27, Z8 \
	VPMADD52LUQ e+256(DI), Z27, Z4 \
	VPMADD52HUQ e+256(DI), Z27, Z9 \
	VPADDQ Z5, Z5, Z5 \
	VPADDQ Z6, Z6, Z6 \
	VPADDQ Z7, Z7, Z7 \
	VPADDQ Z8, Z8, Z8 \
	VPADDQ Z9, Z9, Z9 \
	VPADDQ Z5, Z1, Z1 \
	VPADDQ Z6, Z2, Z2 \
	VPADDQ Z7, Z3, Z3 \
	VPADDQ Z8, Z4, Z4 \
	MUL19ADD(Z9, Z0, Z10, Z11) \
	CARRY(Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10) \
	STORE(Z0, Z1, Z2, Z3, Z4, r)

// CSWAP exchanges the elements at p and q in the lanes whose Z23 is all
// ones and leaves those whose Z23 is zero.
#define CSWAP(p, q) \
	CSWAPLIMB(p, q, 0)   \
	CSWAPLIMB(p, q, 64)  \
	CSWAPLIMB(p, q, 128) \
	CSWAPLIMB(p, q, 192) \
	CSWAPLIMB(p, q, 256)

#define CSWAPLIMB(p, q, off) \
	VMOVDQU64 p+off(DI), Z0 \
	VMOVDQU64 q+off(DI), Z1 \
	VPXORQ Z0, Z1, Z2       \
	VPANDQ Z23, Z2, Z2      \
	VPXORQ Z2, Z0, Z0       \
	VPXORQ Z2, Z1, Z1       \
	VMOVDQU64 Z0, p+off(DI) \
	VMOVDQU64 Z1, q+off(DI)

// CONSTANTS sets Z25 and Z27-Z31 (see the top of the file).
#define CONSTANTS \
	MOVQ $0x7ffffffffffff, AX \
	VPBROADCASTQ AX, Z31      \
	MOVQ $0xfffffffffffda, AX \
	VPBROADCASTQ AX, Z30      \
	MOVQ $0xffffffffffffe, AX \
	VPBROADCASTQ AX, Z29      \
	MOVQ $1, AX               \
	VPBROADCASTQ AX, Z28      \
	MOVQ $121665, AX          \
	VPBROADCASTQ AX, Z27      \
	VPXORQ Z25, Z25, Z25

// func ladder8IFMA(s *ladder8State)
//
// RFC 7748 §5's ladder over bits 254 to 0 of each lane's scalar, the
// step in the order of x25519Ladder's generic one; the swaps are masks
// made from the lanes' bits, so no lane's scalar decides a branch or an
// address.
TEXT ·ladder8IFMA(SB), NOSPLIT, $0-8
	MOVQ s+0(FP), DI
	CONSTANTS
	VPXORQ Z24, Z24, Z24
	MOVQ $254, CX

loop:
	// Z0 = bit t of each lane's scalar: word t/64 (64 bytes a word of
	// eight lanes), shifted right by t mod 64.
	MOVQ CX, AX
	SHRQ $6, AX
	SHLQ $6, AX
	VMOVDQU64 (DI)(AX*1), Z0
	MOVQ CX, BX
	ANDQ $63, BX
	VPBROADCASTQ BX, Z1
	VPSRLVQ Z1, Z0, Z0
	VPANDQ Z28, Z0, Z0
	VPXORQ Z0, Z24, Z23
	VMOVDQA64 Z0, Z24
	VPSUBQ Z23, Z25, Z23
	CSWAP(OX2, OX3)
	CSWAP(OZ2, OZ3)

	ADD(OX2, OZ2, OTA)   // A
	SUB(OX2, OZ2, OTB)   // B
	ADD(OX3, OZ3, OTC)   // C
	SUB(OX3, OZ3, OTD)   // D
	MUL(OTD, OTA, OTD)   // DA
	SQR(OTA, OTA)        // AA
	MUL(OTC, OTB, OTC)   // CB
	SQR(OTB, OTB)        // BB
	ADD(OTD, OTC, OX3)
	SUB(OTD, OTC, OZ3)
	MUL(OTA, OTB, OX2)   // x_2 = AA * BB
	SUB(OTA, OTB, OTB)   // E
	SQR(OX3, OX3)        // x_3 = (DA + CB)^2
	SQR(OZ3, OZ3)
	MULA24ADD(OTB, OTA, OZ2) // AA + a24 * E
	MUL(OZ3, OX1, OZ3)   // z_3 = x_1 * (DA - CB)^2
	MUL(OZ2, OTB, OZ2)   // z_2 = E * (AA + a24 * E)

	DECQ CX
	JGE  loop

	VPSUBQ Z24, Z25, Z23
	CSWAP(OX2, OX3)
	CSWAP(OZ2, OZ3)
	VZEROUPPER
	RET

// func field8OpIFMA(op int, s *ladder8State)
//
// One operation on s's fields for the tests, on all eight lanes: 0 x_2 =
// x_1 * z_2, 1 x_2 = x_1 + z_2, 2 x_2 = x_1 - z_2, 3 x_2 = z_2 + 121665
// x_1, 4 x_2 = x_1^2.
TEXT ·field8OpIFMA(SB), NOSPLIT, $0-16
	MOVQ op+0(FP), CX
	MOVQ s+8(FP), DI
	CONSTANTS
	CMPQ CX, $0
	JEQ  mul
	CMPQ CX, $1
	JEQ  add
	CMPQ CX, $2
	JEQ  sub
	CMPQ CX, $4
	JEQ  sqr
	MULA24ADD(OX1, OZ2, OX2)
	VZEROUPPER
	RET
mul:
	MUL(OX1, OZ2, OX2)
	VZEROUPPER
	RET
add:
	ADD(OX1, OZ2, OX2)
	VZEROUPPER
	RET
sub:
	SUB(OX1, OZ2, OX2)
	VZEROUPPER
	RET
sqr:
	SQR(OX1, OX2)
	VZEROUPPER
	RET
