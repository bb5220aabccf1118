package suite

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"filippo.io/edwards25519/field"
)

// fe64 is an element of GF(2^255 - 19) as four little-endian 64-bit limbs
// holding any value in [0, 2^256): the assembly ladder's form
// (ladder_amd64.s). Values are reduced only when they leave it.
type fe64 [4]uint64

// ladderState is the ladder's working set, laid out as ladder_amd64.s
// reads it: the base's u, the two points, and four temporaries.
type ladderState struct {
	x1, x2, z2, x3, z3 fe64
	a, b, c, d         fe64
}

// fe64U decodes an X25519 u-coordinate, ignoring its top bit (RFC 7748
// §5); u is 32 bytes. Non-canonical values, p to 2^255 - 1, are taken as
// they are, as edwards25519/field takes them.
func fe64U(u []byte) fe64 {
	v := fe64{binary.LittleEndian.Uint64(u), binary.LittleEndian.Uint64(u[8:]),
		binary.LittleEndian.Uint64(u[16:]), binary.LittleEndian.Uint64(u[24:])}
	v[3] &^= 1 << 63
	return v
}

// element returns v as an edwards25519/field element: bit 255 is folded
// in as 19 (2^255 = 19 mod p) twice, the second time for the carry of the
// first, which leaves a value under 2^255 that field decodes as is.
func (v fe64) element() field.Element {
	for range 2 {
		top := v[3] >> 63
		v[3] &^= 1 << 63
		var c uint64
		v[0], c = bits.Add64(v[0], 19*top, 0)
		v[1], c = bits.Add64(v[1], 0, c)
		v[2], c = bits.Add64(v[2], 0, c)
		v[3] += c
	}
	var b [32]byte
	for i, l := range v {
		binary.LittleEndian.PutUint64(b[8*i:], l)
	}
	var e field.Element
	if _, err := e.SetBytes(b[:]); err != nil {
		panic("suite: fe64: " + err.Error()) // b is 32 bytes
	}
	return e
}

// swap exchanges v and w if c is 1 and leaves them if c is 0, in constant
// time.
func (v *fe64) swap(w *fe64, c uint64) {
	mask := -c
	for i := range v {
		t := mask & (v[i] ^ w[i])
		v[i] ^= t
		w[i] ^= t
	}
}

// x25519LadderADX is x25519Ladder's generic ladder with each step in
// assembly (useADX must be set).
func x25519LadderADX(k *[x25519Size]byte, u []byte) (x2, z2 field.Element, err error) {
	if len(u) != x25519Size {
		return x2, z2, fmt.Errorf("X25519 point: invalid field element input size")
	}
	s := &ladderState{x1: fe64U(u), x2: fe64{1}, z3: fe64{1}}
	s.x3 = s.x1
	var swap uint64
	for t := 254; t >= 0; t-- {
		bit := uint64(k[t>>3]>>(t&7)) & 1
		swap ^= bit
		s.x2.swap(&s.x3, swap)
		s.z2.swap(&s.z3, swap)
		swap = bit
		ladderStepADX(s)
	}
	s.x2.swap(&s.x3, swap)
	s.z2.swap(&s.z3, swap)
	x2, z2 = s.x2.element(), s.z2.element()
	*s = ladderState{} // the secret-dependent points and temporaries
	return x2, z2, nil
}
