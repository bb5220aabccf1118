package suite

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// x25519KEM is DHKEM(X25519, HKDF-SHA256) (RFC 9180 §4.1, §7.1) with the
// single-shot base-mode HPKE on top (§5.1, §6.1), for suites 1 and 3.
//
// It exists for speed: a commit derives one key per node of its path and
// seals one secret per node of the copath resolutions, and crypto/ecdh
// computes every public key with a variable-base Montgomery ladder,
// including the ephemeral key of each seal and the public half of every
// private key it parses. Here a public key comes from edwards25519's
// fixed-base multiplication (precomputed tables, several times faster),
// and only a Diffie-Hellman takes a ladder. What it computes is checked
// against crypto/hpke in the tests, both ways, and by the test vectors.
type x25519KEM struct{}

const (
	kemX25519ID    = 0x0020
	x25519Size     = 32
	x25519SecretNh = 32 // Nsecret of DHKEM(X25519, HKDF-SHA256)
)

var kemX25519SuiteID = []byte{'K', 'E', 'M', 0, kemX25519ID}

// x25519Private is a clamped scalar and its public key, computed on first
// use: a group state loaded from storage parses every private key of its
// path, and most operations on it (an application message) use none.
type x25519Private struct {
	scalar [x25519Size]byte
	once   sync.Once
	pub    []byte
	// pre is the public key before its encoding's inversion, once
	// pending ran (publishX25519 finishes it, many keys at a time).
	pre atomic.Pointer[x25519Pending]
}

// x25519Pending is a public key u = num/den not yet divided: den = Z-Y and
// num = Z+Y of the Edwards point [k]B in extended coordinates.
type x25519Pending struct{ num, den field.Element }

// pending returns the public key before its inversion, doing the scalar
// multiplication, the costly part, once: publishX25519 encodes it,
// hasPublic compares with it.
func (k *x25519Private) pending() *x25519Pending {
	if p := k.pre.Load(); p != nil {
		return p
	}
	_, y, z, _ := new(edwards25519.Point).ScalarBaseMult(clampedScalar(k.scalar[:])).ExtendedCoordinates()
	p := new(x25519Pending)
	p.num.Add(z, y)
	p.den.Subtract(z, y)
	k.pre.Store(p)
	return p
}

// publishX25519 encodes the precomputed public keys of ks with one field
// inversion for all (invertAll; a commit at 10,000 members derives 14
// path keys). No denominator is zero: [k]B is not the identity for a
// clamped k.
func publishX25519(ks []*x25519Private) {
	dens := make([]field.Element, len(ks))
	for i, k := range ks {
		dens[i] = k.pre.Load().den
	}
	invertAll(dens)
	var u field.Element
	for i, k := range ks {
		pub := u.Multiply(&dens[i], &k.pre.Load().num).Bytes()
		k.once.Do(func() { k.pub = pub })
	}
}

// invertAll replaces each element of vs by its inverse with one field
// inversion for all, by Montgomery's trick: the inverse of the product,
// then each element's from it and the prefix products, three
// multiplications an element (an inversion is some 265). A zero stays
// zero, as Invert leaves it, without spoiling the others' inverses; zero
// is a public value wherever this is used (a low-order point's ladder).
func invertAll(vs []field.Element) {
	var zero, acc, inv, t field.Element
	prefix := make([]field.Element, len(vs))
	acc.One()
	for i := range vs {
		prefix[i] = acc
		if vs[i].Equal(&zero) == 0 {
			acc.Multiply(&acc, &vs[i])
		}
	}
	inv.Invert(&acc)
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].Equal(&zero) == 1 {
			continue
		}
		t.Multiply(&inv, &prefix[i])
		inv.Multiply(&inv, &vs[i])
		vs[i] = t
	}
}

// pubKey returns the public key, computing it once.
func (k *x25519Private) pubKey() []byte {
	k.once.Do(func() { k.pub = x25519Base(k.scalar[:]) })
	return k.pub
}

// hasPublic reports whether pub is the canonical encoding of k's public
// key, Montgomery u = (Z+Y)/(Z-Y) of E = [k]B, by u (Z-Y) = Z+Y: no
// inversion (Z-Y is never 0: E is not the identity). A match becomes k's
// public key.
func (k *x25519Private) hasPublic(pub []byte) bool {
	var u, l field.Element
	if len(pub) != x25519Size {
		return false
	}
	if _, err := u.SetBytes(pub); err != nil || !bytes.Equal(u.Bytes(), pub) {
		return false // not canonical: no public key of ours is encoded so
	}
	p := k.pending()
	if l.Multiply(&u, &p.den).Equal(&p.num) != 1 {
		return false
	}
	k.once.Do(func() { k.pub = bytes.Clone(pub) })
	return true
}

type x25519Public struct{ pub []byte }

func (x25519KEM) derive(ikm []byte) ([]byte, kemPrivateKey, error) {
	prk := labeledExtract(kdfSHA256, kemX25519SuiteID, nil, "dkp_prk", ikm)
	sk := labeledExpand(kdfSHA256, kemX25519SuiteID, prk, "sk", nil, x25519Size)
	// SerializePrivateKey clamps (RFC 9180 §7.1.2), as crypto/hpke does.
	clamp(sk)
	k, err := x25519KEM{}.newPrivate(sk)
	return sk, k, err
}

func (x25519KEM) newPrivate(b []byte) (kemPrivateKey, error) {
	if len(b) != x25519Size {
		return nil, fmt.Errorf("X25519 key is %d bytes, want %d", len(b), x25519Size)
	}
	k := &x25519Private{}
	copy(k.scalar[:], b)
	clamp(k.scalar[:])
	return k, nil
}

func (x25519KEM) newPublic(b []byte) (kemPublicKey, error) {
	if len(b) != x25519Size {
		return nil, fmt.Errorf("X25519 key is %d bytes, want %d", len(b), x25519Size)
	}
	return x25519Public{append([]byte(nil), b...)}, nil
}

func (k *x25519Private) public() ([]byte, kemPublicKey) {
	pub := k.pubKey()
	return pub, x25519Public{pub}
}

func clamp(k []byte) {
	k[0] &= 248
	k[31] &= 127
	k[31] |= 64
}

// x25519Base is X25519(k, 9) for a clamped k: the Montgomery form of k
// times edwards25519's base point, which generates the same prime-order
// subgroup.
func x25519Base(k []byte) []byte {
	return new(edwards25519.Point).ScalarBaseMult(clampedScalar(k)).BytesMontgomery()
}

// clampedScalar is the scalar of a 32-byte X25519 private key k.
func clampedScalar(k []byte) *edwards25519.Scalar {
	s, err := new(edwards25519.Scalar).SetBytesWithClamping(k)
	if err != nil {
		panic("suite: x25519 scalar: " + err.Error()) // k is 32 bytes
	}
	return s
}

var errX25519Zero = errors.New("X25519 output is zero (low-order point)")

// x25519 is the X25519 function of RFC 7748 §5 for a clamped scalar k: the
// Montgomery ladder over the u-coordinate, in constant time. An all-zero
// result, from a low-order point, is an error (RFC 9180 §7.1.4).
func x25519(k *[x25519Size]byte, u []byte) ([]byte, error) {
	x2, z2, err := x25519Ladder(k, u)
	if err != nil {
		return nil, err
	}
	z2.Invert(&z2)
	return x25519Output(x2.Multiply(&x2, &z2))
}

// x25519Ladder is x25519 up to its last step: the result in projective
// form, u = x_2 / z_2, so that a caller with another inversion to make
// can make both at once.
func x25519Ladder(k *[x25519Size]byte, u []byte) (x2, z2 field.Element, err error) {
	if useADX {
		return x25519LadderADX(k, u)
	}
	return x25519LadderGeneric(k, u)
}

// x25519LadderGeneric is x25519Ladder on edwards25519/field's arithmetic.
func x25519LadderGeneric(k *[x25519Size]byte, u []byte) (x2, z2 field.Element, err error) {
	// RFC 7748 §5's step, its doubling of (x_2 : z_2) and its differential
	// addition into (x_3 : z_3) interleaved in four temporaries: 11 %
	// faster here than the RFC's order with one variable per value
	// (BenchmarkX25519/ladder, 58.8 → 52.4 µs).
	var x1, x3, z3, a, b, c, d field.Element
	if _, err := x1.SetBytes(u); err != nil {
		return x2, z2, fmt.Errorf("X25519 point: %w", err)
	}
	x2.One()
	z2.Zero()
	x3.Set(&x1)
	z3.One()
	swap := 0
	for t := 254; t >= 0; t-- {
		bit := int(k[t>>3]>>(t&7)) & 1
		swap ^= bit
		x2.Swap(&x3, swap)
		z2.Swap(&z3, swap)
		swap = bit

		a.Add(&x2, &z2)      // A
		b.Subtract(&x2, &z2) // B
		c.Add(&x3, &z3)      // C
		d.Subtract(&x3, &z3) // D
		d.Multiply(&d, &a)   // DA
		a.Square(&a)         // AA
		c.Multiply(&c, &b)   // CB
		b.Square(&b)         // BB
		x3.Add(&d, &c)
		z3.Subtract(&d, &c)
		x2.Multiply(&a, &b) // x_2 = AA * BB
		b.Subtract(&a, &b)  // E
		x3.Square(&x3)      // x_3 = (DA + CB)^2
		z3.Square(&z3)
		z2.Mult32(&b, 121665) // a24 * E, a24 = (A - 2) / 4
		z2.Add(&z2, &a)
		z3.Multiply(&z3, &x1) // z_3 = x_1 * (DA - CB)^2
		z2.Multiply(&z2, &b)  // z_2 = E * (AA + a24 * E)
	}
	x2.Swap(&x3, swap)
	z2.Swap(&z3, swap)
	return x2, z2, nil
}

// x25519Output encodes u, refusing zero, the output of a low-order point
// (and of z_2 = 0, whose inverse is taken as 0).
func x25519Output(u *field.Element) ([]byte, error) {
	out := u.Bytes()
	if subtle.ConstantTimeCompare(out, make([]byte, x25519Size)) == 1 {
		return nil, errX25519Zero
	}
	return out, nil
}

// encap is DHKEM Encap (RFC 9180 §4.1) to pkR.
func (k x25519Public) encap() (sharedSecret, enc []byte, err error) {
	ps := startEncaps([][]byte{k.pub})
	finishEncaps(ps)
	return ps[0].sharedSecret, ps[0].enc, ps[0].err
}

// x25519Encap is an Encap up to its field inversion: the ephemeral public
// key E = [skE]B on edwards25519, whose Montgomery u is (Z+Y)/(Z-Y), and
// the shared secret x_2/z_2 of the ladder. finishEncaps divides them, all
// of a batch with one inversion (Montgomery's trick): an inversion costs
// some 265 multiplications, an eighth of a seal before the assembly
// ladder, and a sparse tree's commit makes a seal per member.
type x25519Encap struct {
	pkR               []byte
	zMinusY, zPlusY   field.Element
	x2, z2            field.Element
	sharedSecret, enc []byte
	err               error
}

// startEncaps starts an Encap to each of the public keys pkRs: a fresh
// ephemeral key each, its public key by the fixed-base multiplication,
// and its Diffie-Hellman by the ladder, eight ladders at once where the
// CPU has AVX-512 IFMA (ladder8.go).
func startEncaps(pkRs [][]byte) []x25519Encap {
	ps := make([]x25519Encap, len(pkRs))
	sks := make([][x25519Size]byte, len(pkRs))
	defer clear(sks)
	for i, pkR := range pkRs {
		ps[i].pkR = pkR
		if _, err := rand.Read(sks[i][:]); err != nil {
			ps[i].err = err
			continue
		}
		clamp(sks[i][:])
		_, y, z, _ := new(edwards25519.Point).ScalarBaseMult(clampedScalar(sks[i][:])).ExtendedCoordinates()
		ps[i].zMinusY.Subtract(z, y)
		ps[i].zPlusY.Add(z, y)
	}
	var ks []*[x25519Size]byte
	var us [][]byte
	var at []int
	for i := range ps {
		if ps[i].err == nil {
			ks, us, at = append(ks, &sks[i]), append(us, pkRs[i]), append(at, i)
		}
	}
	runLadders(ks, us, func(j int, x2, z2 field.Element, err error) {
		p := &ps[at[j]]
		p.x2, p.z2, p.err = x2, z2, err
	})
	return ps
}

// finishEncaps divides each started Encap's two values with one field
// inversion for the batch, then derives each shared secret. An Encap that
// failed to start, or to a low-order point (z_2 = 0, whose Diffie-Hellman
// output is zero, RFC 9180 §7.1.4), fails alone: it is kept out of the
// product, which would be zero.
func finishEncaps(ps []x25519Encap) {
	dens := make([]field.Element, len(ps))
	for i := range ps {
		if p := &ps[i]; p.err == nil {
			dens[i].Multiply(&p.zMinusY, &p.z2) // (Z-Y) z_2
		}
	}
	invertAll(dens)
	var zero field.Element
	for i := range ps {
		p := &ps[i]
		switch {
		case p.err != nil:
			continue
		case p.z2.Equal(&zero) == 1:
			p.err = errX25519Zero // the recipient's key is public: no secret is revealed by the branch
			continue
		}
		var u field.Element
		dh, err := x25519Output(u.Multiply(u.Multiply(&p.x2, &p.zMinusY), &dens[i]))
		if err != nil {
			p.err = err
			continue
		}
		p.enc = u.Multiply(u.Multiply(&p.zPlusY, &p.z2), &dens[i]).Bytes()
		p.sharedSecret = kemSharedSecret(dh, p.enc, p.pkR)
		p.x2, p.z2 = zero, zero
	}
}

// runLadders runs x25519Ladder for each clamped scalar ks[j] and
// u-coordinate us[j], eight at a time where the CPU has AVX-512 IFMA and
// at least ladder8Min remain (ladder8.go), and passes each result to set.
func runLadders(ks []*[x25519Size]byte, us [][]byte, set func(j int, x2, z2 field.Element, err error)) {
	for j := 0; j < len(ks); {
		rest := len(ks) - j
		if useIFMA && rest >= ladder8Min && !slices.ContainsFunc(us[j:j+min(rest, ladder8Lanes)], badU) {
			n := min(ladder8Lanes, rest)
			x2, z2 := x25519Ladder8(ks[j:j+n], us[j:j+n])
			for l := range n {
				set(j+l, x2[l], z2[l], nil)
			}
			j += n
			continue
		}
		x2, z2, err := x25519Ladder(ks[j], us[j])
		set(j, x2, z2, err)
		j++
	}
}

// badU reports whether u is not 32 bytes: x25519Ladder's error, which
// the eight-lane ladder leaves to it.
func badU(u []byte) bool { return len(u) != x25519Size }

// decap is DHKEM Decap (RFC 9180 §4.1) with k.
func (k *x25519Private) decap(enc []byte) ([]byte, error) {
	if len(enc) != x25519Size {
		return nil, fmt.Errorf("%w: kem output of %d bytes", ErrDecrypt, len(enc))
	}
	dh, err := x25519(&k.scalar, enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	return kemSharedSecret(dh, enc, k.pubKey()), nil
}

// openAll opens each ciphertext cts[i], sealed to ks[i] with KEM output
// encs[i], under the key schedule context ksc (keyScheduleContext): the
// Decaps' ladders run eight at a time where the CPU allows and share one
// field inversion, as a batch of Encaps does. errs[i] wraps ErrDecrypt.
func openAll(s *Suite, ksc []byte, ks []*x25519Private, encs, cts [][]byte) (out [][]byte, errs []error) {
	out, errs = make([][]byte, len(ks)), make([]error, len(ks))
	x2s, z2s := make([]field.Element, len(ks)), make([]field.Element, len(ks))
	scalars := make([]*[x25519Size]byte, len(ks))
	for i, k := range ks {
		scalars[i] = &k.scalar
	}
	runLadders(scalars, encs, func(i int, x2, z2 field.Element, err error) {
		x2s[i], z2s[i], errs[i] = x2, z2, err
	})
	invertAll(z2s)
	for i, k := range ks {
		if errs[i] != nil {
			errs[i] = fmt.Errorf("%w: %v", ErrDecrypt, errs[i])
			continue
		}
		// A low-order point's z_2 is zero and stays so: its output is
		// zero, which x25519Output refuses.
		dh, err := x25519Output(x2s[i].Multiply(&x2s[i], &z2s[i]))
		if err != nil {
			errs[i] = fmt.Errorf("%w: %v", ErrDecrypt, err)
			continue
		}
		c := keySchedule(s, kemSharedSecret(dh, encs[i], k.pubKey()), ksc, false)
		out[i], errs[i] = s.Open(c.key, c.nonce, nil, cts[i])
		clear(c.key)
	}
	clear(x2s)
	return out, errs
}

// kemSharedSecret is DHKEM's ExtractAndExpand(dh, enc || pkR).
func kemSharedSecret(dh, enc, pkR []byte) []byte {
	defer clear(dh)
	prk := labeledExtract(kdfSHA256, kemX25519SuiteID, nil, "eae_prk", dh)
	kemContext := append(append(make([]byte, 0, 2*x25519Size), enc...), pkR...)
	return labeledExpand(kdfSHA256, kemX25519SuiteID, prk, "shared_secret", kemContext, x25519SecretNh)
}

// hpkeContext is the base-mode key schedule's output (RFC 9180 §5.1) for
// the single message MLS sends per context (sequence number 0), or for an
// export.
type hpkeContext struct {
	key, nonce, exporter []byte
}

// hpkeSuiteID is RFC 9180's suite_id of DHKEM(X25519) with s's KDF and
// AEAD.
func hpkeSuiteID(s *Suite) []byte {
	id := binary.BigEndian.AppendUint16([]byte("HPKE"), kemX25519ID)
	id = binary.BigEndian.AppendUint16(id, hpkeKDF(s).ID())
	return binary.BigEndian.AppendUint16(id, s.aead.id)
}

// keyScheduleContext is the key_schedule_context of KeySchedule(mode_base,
// shared_secret, info, "", "") with the suite's KDF (RFC 9180 §5.1):
// mode_base, psk_id_hash and info_hash, all of the schedule that does not
// depend on the shared secret, so that seals under one info share it
// (SealContext).
func keyScheduleContext(s *Suite, info []byte) []byte {
	// psk_id_hash is the same for every context of the suite.
	ksc := append([]byte{0}, s.hpkePSKIDHash()...) // mode_base
	return append(ksc, labeledExtract(s.kdf, hpkeSuiteID(s), nil, "info_hash", info)...)
}

// keySchedule is the rest of KeySchedule(mode_base, shared_secret, info,
// "", "") after keyScheduleContext, deriving only the AEAD key and nonce,
// or only the exporter secret: MLS either seals one message or exports.
func keySchedule(s *Suite, sharedSecret, ksc []byte, export bool) hpkeContext {
	suiteID := hpkeSuiteID(s)
	secret := labeledExtract(s.kdf, suiteID, sharedSecret, "secret", nil)
	defer clear(secret)
	if export {
		return hpkeContext{exporter: labeledExpand(s.kdf, suiteID, secret, "exp", ksc, s.HashSize())}
	}
	return hpkeContext{
		key:   labeledExpand(s.kdf, suiteID, secret, "key", ksc, s.KeySize()),
		nonce: labeledExpand(s.kdf, suiteID, secret, "base_nonce", ksc, s.NonceSize()),
	}
}

// hpkePSKIDHash is LabeledExtract("", "psk_id_hash", "") of the suite's
// HPKE, computed once.
func (s *Suite) hpkePSKIDHash() []byte {
	s.pskIDHashOnce.Do(func() { s.pskIDHash = labeledExtract(s.kdf, hpkeSuiteID(s), nil, "psk_id_hash", nil) })
	return s.pskIDHash
}

func (k x25519Public) seal(s *Suite, info, plaintext []byte) ([]byte, []byte, error) {
	ss, enc, err := k.encap()
	if err != nil {
		return nil, nil, fmt.Errorf("hpke encap: %w", err)
	}
	defer clear(ss)
	ct, err := k.sealShared(s, ss, keyScheduleContext(s, info), plaintext)
	if err != nil {
		return nil, nil, err
	}
	return enc, ct, nil
}

// sealShared is the rest of SealBase after Encap: the key schedule with
// the context ksc of its info (keyScheduleContext) and the AEAD of the
// single message (sequence number 0).
func (x25519Public) sealShared(s *Suite, sharedSecret, ksc, plaintext []byte) ([]byte, error) {
	c := keySchedule(s, sharedSecret, ksc, false)
	defer clear(c.key)
	ct, err := s.Seal(c.key, c.nonce, nil, plaintext)
	if err != nil {
		return nil, fmt.Errorf("hpke seal: %w", err)
	}
	return ct, nil
}

func (k *x25519Private) open(s *Suite, enc, info, ciphertext []byte) ([]byte, error) {
	ss, err := k.decap(enc)
	if err != nil {
		return nil, err
	}
	c := keySchedule(s, ss, keyScheduleContext(s, info), false)
	return s.Open(c.key, c.nonce, nil, ciphertext)
}

func (k x25519Public) exportSender(s *Suite, exporterContext string, length int) ([]byte, []byte, error) {
	ss, enc, err := k.encap()
	if err != nil {
		return nil, nil, fmt.Errorf("hpke encap: %w", err)
	}
	return enc, hpkeExport(s, keySchedule(s, ss, keyScheduleContext(s, nil), true), exporterContext, length), nil
}

func (k *x25519Private) exportReceiver(s *Suite, enc []byte, exporterContext string, length int) ([]byte, error) {
	ss, err := k.decap(enc)
	if err != nil {
		return nil, err
	}
	return hpkeExport(s, keySchedule(s, ss, keyScheduleContext(s, nil), true), exporterContext, length), nil
}

// hpkeExport is Context.Export (RFC 9180 §5.3).
func hpkeExport(s *Suite, c hpkeContext, exporterContext string, length int) []byte {
	return labeledExpand(s.kdf, hpkeSuiteID(s), c.exporter, "sec", []byte(exporterContext), length)
}

// labeledExtract and labeledExpand are RFC 9180 §4's over the KDF k: the
// KEM's (HKDF-SHA256 for X25519, HKDF-SHA512 for X448) or the suite's.
func labeledExtract(k *kdf, suiteID, salt []byte, label string, ikm []byte) []byte {
	return k.extract(salt, labeledIKM(suiteID, label, ikm))
}

func labeledExpand(k *kdf, suiteID, prk []byte, label string, info []byte, n int) []byte {
	return k.expand(prk, labeledInfo(suiteID, label, info, n), n)
}

func labeledIKM(suiteID []byte, label string, ikm []byte) []byte {
	b := make([]byte, 0, 7+len(suiteID)+len(label)+len(ikm))
	return append(append(append(append(b, "HPKE-v1"...), suiteID...), label...), ikm...)
}

func labeledInfo(suiteID []byte, label string, info []byte, n int) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 9+len(suiteID)+len(label)+len(info)), uint16(n))
	return append(append(append(append(b, "HPKE-v1"...), suiteID...), label...), info...)
}
