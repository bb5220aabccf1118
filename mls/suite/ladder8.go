package suite

import (
	"encoding/binary"

	"filippo.io/edwards25519/field"
)

// Eight ladders at once. A commit to a sparse tree seals to every member,
// and each seal's Diffie-Hellman is a ladder of 255 steps: in the scalar
// ladder (ladder_amd64.s) over half of the commit's CPU. AVX-512 IFMA
// multiplies the low 52 bits of eight pairs of 64-bit lanes in one
// instruction, so eight independent ladders, one a lane, share every
// instruction of one: a field element is five 51-bit limbs, each limb of
// eight elements in one register (ladder8_amd64.s).
//
// The lanes are unrelated Encaps: each lane's scalar picks its own swaps,
// made as masks from its bits, so no lane's secret decides a branch or an
// address, as in the scalar ladder.

// ladder8Lanes is the number of ladders ladder8IFMA runs at once, and
// ladder8Min the fewest worth running together: a batch costs the same
// for one lane as for eight, under three scalar ladders' time
// (BenchmarkX25519: 73 µs a batch, 9.1 a ladder, against 29.5 for
// x25519 alone).
const (
	ladder8Lanes = 8
	ladder8Min   = 3
)

// fe8 is eight field elements in radix 2^51, limb-major: fe8[i][l] is
// limb i of lane l.
type fe8 [5][ladder8Lanes]uint64

// ladder8State is the eight ladders' working set, laid out as
// ladder8_amd64.s reads it: the lanes' scalars as 64-bit little-endian
// words, word-major, then the elements of x25519LadderGeneric.
type ladder8State struct {
	k                  [4][ladder8Lanes]uint64
	x1, x2, z2, x3, z3 fe8
	a, b, c, d         fe8
}

const mask51 = 1<<51 - 1

// setU sets lane l of v to the u-coordinate u (32 bytes), its top bit
// ignored (RFC 7748 §5); non-canonical values are taken as they are, as
// edwards25519/field takes them.
func (v *fe8) setU(l int, u []byte) {
	w0, w1 := binary.LittleEndian.Uint64(u), binary.LittleEndian.Uint64(u[8:])
	w2, w3 := binary.LittleEndian.Uint64(u[16:]), binary.LittleEndian.Uint64(u[24:])
	v[0][l] = w0 & mask51
	v[1][l] = (w0>>51 | w1<<13) & mask51
	v[2][l] = (w1>>38 | w2<<26) & mask51
	v[3][l] = (w2>>25 | w3<<39) & mask51
	v[4][l] = w3 >> 12 & mask51
}

// element returns lane l of v as an edwards25519/field element. The
// lane's limbs are carried until each is under 2^51 (the assembly leaves
// them under 2^52), so the value is under 2^255 and field decodes it as
// is.
func (v *fe8) element(l int) field.Element {
	var t [5]uint64
	for i := range t {
		t[i] = v[i][l]
	}
	for range 2 {
		c := t[4] >> 51
		t[4] &= mask51
		for i := range 4 {
			t[i+1] += t[i] >> 51
			t[i] &= mask51
		}
		t[0] += 19 * c
	}
	// After the second pass only t[0] can hold a carry (19 at most over
	// 2^51), and t[1] takes it.
	t[1] += t[0] >> 51
	t[0] &= mask51
	var b [32]byte
	binary.LittleEndian.PutUint64(b[0:], t[0]|t[1]<<51)
	binary.LittleEndian.PutUint64(b[8:], t[1]>>13|t[2]<<38)
	binary.LittleEndian.PutUint64(b[16:], t[2]>>26|t[3]<<25)
	binary.LittleEndian.PutUint64(b[24:], t[3]>>39|t[4]<<12)
	var e field.Element
	if _, err := e.SetBytes(b[:]); err != nil {
		panic("suite: fe8: " + err.Error()) // b is 32 bytes
	}
	return e
}

// x25519Ladder8 runs x25519Ladder for up to eight clamped scalars ks and
// u-coordinates us (32 bytes each; useIFMA must be set). Lanes past
// len(ks) repeat lane 0, and their results are dropped.
func x25519Ladder8(ks []*[x25519Size]byte, us [][]byte) (x2, z2 [ladder8Lanes]field.Element) {
	s := new(ladder8State)
	for l := range ladder8Lanes {
		src := l
		if l >= len(ks) {
			src = 0
		}
		for w := range 4 {
			s.k[w][l] = binary.LittleEndian.Uint64(ks[src][8*w:])
		}
		s.x1.setU(l, us[src])
		s.x2[0][l], s.z3[0][l] = 1, 1
	}
	s.x3 = s.x1
	ladder8IFMA(s)
	for l := range ks {
		x2[l], z2[l] = s.x2.element(l), s.z2.element(l)
	}
	*s = ladder8State{} // the scalars, and the points they chose
	return x2, z2
}
