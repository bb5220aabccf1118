package suite

import (
	"crypto/rand"
	"crypto/sha512"
	"errors"

	"filippo.io/edwards25519"
)

// Ed25519 verification (suites 1 and 3).
//
// Signing is crypto/ed25519's; verification is done here, on
// filippo.io/edwards25519, for two reasons. A public key is decompressed
// once, when it is parsed, instead of on every verification. And many
// signatures can be verified together (Suite.VerifyBatch) for about half
// the cost of verifying them one by one, down to a quarter when one key
// made them all: a new member checks the signature of every leaf of the
// tree it joins, and that is nearly all of a join's cost.
//
// A batch checks one random linear combination of its signatures'
// equations, and such a combination is sound only for the cofactored
// equation [8][S]B = [8]R + [8][k]A, the one RFC 8032 §5.1.7 states: with
// the cofactorless [S]B = R + [k]A, small-order terms of different
// signatures could cancel. So that a signature is valid or not however it
// is checked, a single signature is checked with the cofactored equation
// too. This accepts more than crypto/ed25519 and ed25519-dalek's verify,
// which use the cofactorless one, only for a signature whose R or A has a
// small-order component, which no signer that follows RFC 8032 makes
// (such a signer could only be the holder of the key, signing its own
// content in a way one verifier accepts and another refuses; the
// cofactored rule makes every member of ours decide alike).
//
// Encodings are held to RFC 8032 §5.1.3 and §5.1.7: S < L, and R and A
// canonical (y < p, and no sign bit on a point whose x is 0).

// ed25519Public is a parsed Ed25519 public key.
type ed25519Public struct {
	enc  []byte
	negA *edwards25519.Point // -A, as the verification equation takes it
}

func newEd25519Public(b []byte) (verifyingKey, error) {
	a, err := decodeEd25519Point(b)
	if err != nil {
		return nil, err
	}
	return ed25519Public{enc: b, negA: a.Negate(a)}, nil
}

var (
	errEd25519Length    = errors.New("ed25519 public key is not 32 bytes")
	errEd25519Encoding  = errors.New("ed25519 point encoding is not canonical")
	errEd25519NotAPoint = errors.New("ed25519 point encoding is not a point")
)

// decodeEd25519Point decodes a canonical point encoding. edwards25519's
// SetBytes accepts non-canonical ones too, as ZIP 215 does; RFC 8032 does
// not, and neither does crypto/ed25519 for R, whose encoding it compares.
func decodeEd25519Point(b []byte) (*edwards25519.Point, error) {
	if len(b) != 32 {
		return nil, errEd25519Length
	}
	if !canonicalEd25519(b) {
		return nil, errEd25519Encoding
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		return nil, errEd25519NotAPoint
	}
	return p, nil
}

// canonicalEd25519 reports whether b, 32 bytes, encodes y < p = 2^255-19,
// and no sign bit if y is 1 or p-1 (the two points whose x is 0).
func canonicalEd25519(b []byte) bool {
	allOnes := b[31]&0x7f == 0x7f
	for _, c := range b[1:31] {
		allOnes = allOnes && c == 0xff
	}
	if allOnes && b[0] >= 0xed {
		return false // y >= p
	}
	if b[31]&0x80 == 0 {
		return true
	}
	if allOnes && b[0] == 0xec {
		return false // y = p-1, x = 0, sign set
	}
	if b[0] != 1 || b[31] != 0x80 {
		return true
	}
	for _, c := range b[1:31] {
		if c != 0 {
			return true
		}
	}
	return false // y = 1, x = 0, sign set
}

// ed25519Signature is a signature's parts as the equation takes them: R,
// S, and k = SHA-512(R || A || M) mod L.
type ed25519Signature struct {
	r    *edwards25519.Point
	s, k *edwards25519.Scalar
}

func parseEd25519Signature(pub, msg, sig []byte) (ed25519Signature, bool) {
	if len(sig) != 64 {
		return ed25519Signature{}, false
	}
	r, err := decodeEd25519Point(sig[:32])
	if err != nil {
		return ed25519Signature{}, false
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return ed25519Signature{}, false
	}
	h := sha512.New()
	h.Write(sig[:32])
	h.Write(pub)
	h.Write(msg)
	var d [64]byte
	k, err := new(edwards25519.Scalar).SetUniformBytes(h.Sum(d[:0]))
	if err != nil {
		panic("suite: SHA-512 output is not 64 bytes")
	}
	return ed25519Signature{r, s, k}, true
}

func (k ed25519Public) verify(msg, sig []byte) bool {
	p, ok := parseEd25519Signature(k.enc, msg, sig)
	if !ok {
		return false
	}
	// [S]B - [k]A - R must have small order.
	v := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(p.k, k.negA, p.s)
	v.Subtract(v, p.r)
	return smallOrder(v)
}

func smallOrder(p *edwards25519.Point) bool {
	return new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1
}

// ed25519VerifyAll reports whether every signature verifies, checking
// that [8]( [-Σ z_i S_i]B + Σ [z_i]R_i + Σ [z_i k_i]A_i ) is the identity,
// with z_0 = 1 and the other z_i drawn at random below 2^128. If any
// signature does not verify, the sum is the identity with probability at
// most 2^-128: [8] of a failing equation is a point of the prime-order
// subgroup other than the identity, so if the last failing one has i > 0,
// the sum vanishes for at most one residue of its z_i mod L, and if only
// the first fails, the sum is that point. It returns false if any key or
// signature does not decode.
//
// The terms of one key are gathered, [Σ z_i k_i]A, so that a batch of one
// sender's signatures (a run of its messages, a commit's content and its
// leaf) costs one multiplication of A, not one per signature; and R_0,
// whose coefficient is 1, is added, not multiplied.
func ed25519VerifyAll(keys, msgs, sigs [][]byte) bool {
	n := len(sigs)
	if n == 0 {
		return true
	}
	z := make([]byte, 16*n)
	rand.Read(z)
	scalars := make([]*edwards25519.Scalar, 0, 2*n+1)
	points := make([]*edwards25519.Point, 0, 2*n+1)
	keyTerm := make(map[string]*edwards25519.Scalar, n)
	sumS := edwards25519.NewScalar()
	var r0 *edwards25519.Point
	var wide [64]byte
	for i := range n {
		p, ok := parseEd25519Signature(keys[i], msgs[i], sigs[i])
		if !ok {
			return false
		}
		if i == 0 {
			r0 = p.r
			sumS.Set(p.s)
		} else {
			copy(wide[:16], z[16*i:])
			zi, _ := new(edwards25519.Scalar).SetUniformBytes(wide[:])
			sumS.MultiplyAdd(zi, p.s, sumS)
			scalars = append(scalars, zi)
			points = append(points, p.r)
			p.k.Multiply(p.k, zi)
		}
		if ka, ok := keyTerm[string(keys[i])]; ok {
			ka.Add(ka, p.k)
			continue
		}
		a, err := decodeEd25519Point(keys[i])
		if err != nil {
			return false
		}
		keyTerm[string(keys[i])] = p.k
		scalars = append(scalars, p.k)
		points = append(points, a)
	}
	scalars = append(scalars, sumS.Negate(sumS))
	points = append(points, edwards25519.NewGeneratorPoint())
	v := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	return smallOrder(v.Add(v, r0))
}
