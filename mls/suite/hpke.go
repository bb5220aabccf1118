package suite

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"sync"

	"github.com/cloudflare/circl/dh/x448"
	circlhpke "github.com/cloudflare/circl/hpke"
	circlkem "github.com/cloudflare/circl/kem"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// HPKEPrivateKey is a parsed HPKE private key of one suite's KEM, together
// with its public key, which is computed once, when first asked for: a
// group state loaded from storage parses every private key of its path,
// and an application message uses none of them. It is immutable and safe
// for concurrent use.
type HPKEPrivateKey struct {
	suite *Suite
	enc   []byte
	key   kemPrivateKey
	once  sync.Once
	pub   *HPKEPublicKey
}

// HPKEPublicKey is a parsed HPKE public key of one suite's KEM. It is
// immutable and safe for concurrent use.
type HPKEPublicKey struct {
	suite *Suite
	enc   []byte
	key   kemPublicKey
}

// kem is one HPKE KEM, with the single-shot base-mode HPKE that MLS uses
// (RFC 9420 §5.1.3) on its keys.
type kem interface {
	// derive is RFC 9180 DeriveKeyPair; it returns the serialised
	// private key too.
	derive(ikm []byte) ([]byte, kemPrivateKey, error)
	// newPrivate is DeserializePrivateKey.
	newPrivate(b []byte) (kemPrivateKey, error)
	// newPublic is DeserializePublicKey, with the validation RFC 9180
	// §7.1.4 asks of the NIST curves' points.
	newPublic(b []byte) (kemPublicKey, error)
}

type kemPrivateKey interface {
	public() ([]byte, kemPublicKey)
	open(s *Suite, enc, info, ciphertext []byte) ([]byte, error)
	exportReceiver(s *Suite, enc []byte, exporterContext string, length int) ([]byte, error)
}

type kemPublicKey interface {
	seal(s *Suite, info, plaintext []byte) (enc, ciphertext []byte, err error)
	exportSender(s *Suite, exporterContext string, length int) (enc, secret []byte, err error)
}

// GenerateHPKEKey returns a fresh random HPKE key, derived from Nh random
// bytes.
func (s *Suite) GenerateHPKEKey() (*HPKEPrivateKey, error) {
	seed := make([]byte, s.HashSize())
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	defer clear(seed)
	return s.DeriveHPKEKey(seed)
}

// DeriveHPKEKey derives an HPKE key from a secret (RFC 9180 DeriveKeyPair),
// as MLS does from node secrets (RFC 9420 §7.4) and the external secret
// (§8.3).
func (s *Suite) DeriveHPKEKey(ikm []byte) (*HPKEPrivateKey, error) {
	enc, k, err := s.kem.derive(ikm)
	if err != nil {
		return nil, fmt.Errorf("hpke derive key pair: %w", err)
	}
	return s.newHPKEPrivateKey(enc, k), nil
}

// NewHPKEPrivateKey parses a serialised HPKE private key (RFC 9180
// SerializePrivateKey). NIST-curve scalars shorter than Nsk are accepted:
// some implementations (and the official vectors, for P-521) drop leading
// zero bytes, which does not change the integer. Bytes returns b as given.
func (s *Suite) NewHPKEPrivateKey(b []byte) (*HPKEPrivateKey, error) {
	k, err := s.kem.newPrivate(b)
	if err != nil {
		return nil, fmt.Errorf("hpke private key: %w", err)
	}
	return s.newHPKEPrivateKey(append([]byte(nil), b...), k), nil
}

func (s *Suite) newHPKEPrivateKey(enc []byte, k kemPrivateKey) *HPKEPrivateKey {
	return &HPKEPrivateKey{suite: s, enc: enc, key: k}
}

// NewHPKEPublicKey parses a serialised HPKE public key (RFC 9180
// SerializePublicKey), as HPKEPublicKey fields of MLS messages carry it.
func (s *Suite) NewHPKEPublicKey(b []byte) (*HPKEPublicKey, error) {
	k, err := s.kem.newPublic(b)
	if err != nil {
		return nil, fmt.Errorf("hpke public key: %w", err)
	}
	return &HPKEPublicKey{suite: s, enc: append([]byte(nil), b...), key: k}, nil
}

// Suite returns the key's cipher suite.
func (k *HPKEPrivateKey) Suite() *Suite { return k.suite }

// Public returns the key's public key.
func (k *HPKEPrivateKey) Public() *HPKEPublicKey {
	k.once.Do(func() {
		enc, pub := k.key.public()
		k.pub = &HPKEPublicKey{suite: k.suite, enc: enc, key: pub}
	})
	return k.pub
}

// HasPublic reports whether pub is the encoding of k's public key, as
// bytes.Equal(k.Public().Bytes(), pub) would, for a key whose public key
// was not computed yet: in the X25519 suites it compares without the field
// inversion that encoding the public key takes (a tenth of a processed
// commit at 10,000 members goes to checking the path keys it derives), and
// a key found to match keeps pub as its public key.
func (k *HPKEPrivateKey) HasPublic(pub []byte) bool {
	if m, ok := k.key.(interface{ hasPublic([]byte) bool }); ok {
		return m.hasPublic(pub)
	}
	return bytes.Equal(k.Public().Bytes(), pub)
}

// Precompute does the costly part of computing k's public key ahead of
// PublishHPKEKeys, on whatever goroutine calls it: in the X25519 suites
// the scalar multiplication, leaving the field inversion that encodes the
// result, which PublishHPKEKeys shares among many keys. Elsewhere it does
// nothing, and Public computes the key as before.
func (k *HPKEPrivateKey) Precompute() {
	if p, ok := k.key.(*x25519Private); ok {
		p.pending()
	}
}

// PublishHPKEKeys computes the public keys of keys, as Public would, the
// X25519 keys that were precomputed with one field inversion for all
// (a commit's path keys: Precompute on both cores, then this).
func PublishHPKEKeys(keys []*HPKEPrivateKey) {
	var batch []*x25519Private
	for _, k := range keys {
		if p, ok := k.key.(*x25519Private); ok && p.pre.Load() != nil {
			batch = append(batch, p)
		}
	}
	publishX25519(batch)
	for _, k := range keys {
		k.Public()
	}
}

// Bytes returns the serialised key, as a new slice. It is secret.
func (k *HPKEPrivateKey) Bytes() []byte { return append([]byte(nil), k.enc...) }

// Equal reports whether k and x are the same key of the same suite, in
// constant time for keys of one suite.
func (k *HPKEPrivateKey) Equal(x *HPKEPrivateKey) bool {
	return x != nil && k.suite == x.suite && subtle.ConstantTimeCompare(k.enc, x.enc) == 1
}

// DecryptWithLabel reverses HPKEPublicKey.EncryptWithLabel (RFC 9420
// §5.1.3). A ciphertext that does not authenticate yields an error
// wrapping ErrDecrypt.
func (k *HPKEPrivateKey) DecryptWithLabel(label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	return k.key.open(k.suite, kemOutput, encryptContext(label, context), ciphertext)
}

// Suite returns the key's cipher suite.
func (k *HPKEPublicKey) Suite() *Suite { return k.suite }

// Bytes returns the serialised key. The slice is shared and must not be
// modified.
func (k *HPKEPublicKey) Bytes() []byte { return k.enc }

// Equal reports whether k and x encode the same key of the same suite.
func (k *HPKEPublicKey) Equal(x *HPKEPublicKey) bool {
	return x != nil && k.suite == x.suite && string(k.enc) == string(x.enc)
}

// EncryptWithLabel implements RFC 9420 §5.1.3: HPKE SealBase to k with
// info = EncryptContext{label, context} and an empty aad.
func (k *HPKEPublicKey) EncryptWithLabel(label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	return k.key.seal(k.suite, encryptContext(label, context), plaintext)
}

func encryptContext(label string, context []byte) []byte {
	w := codec.NewWriter(len(labelPrefix) + len(label) + len(context) + 8)
	w.Opaque([]byte(labelPrefix + label))
	w.Opaque(context)
	return w.Bytes()
}

func hpkeKDF(s *Suite) hpke.KDF {
	switch s.HashSize() {
	case 48:
		return hpke.HKDFSHA384()
	case 64:
		return hpke.HKDFSHA512()
	default:
		return hpke.HKDFSHA256()
	}
}

func hpkeAEAD(s *Suite) hpke.AEAD {
	a, err := hpke.NewAEAD(s.aead.id)
	if err != nil {
		panic("suite: hpke aead: " + err.Error()) // ids are constants of this package
	}
	return a
}

// stdKEM is a DHKEM over a NIST curve from the standard library's
// crypto/hpke, whose public keys come from precomputed tables already.
// X25519 has its own implementation (x25519.go).
type stdKEM uint16

const (
	kemP256 stdKEM = 0x0010
	kemP384 stdKEM = 0x0011
	kemP521 stdKEM = 0x0012
)

func (k stdKEM) scheme() hpke.KEM {
	switch k {
	case kemP256:
		return hpke.DHKEM(ecdh.P256())
	case kemP384:
		return hpke.DHKEM(ecdh.P384())
	default:
		return hpke.DHKEM(ecdh.P521())
	}
}

type stdPrivate struct{ k hpke.PrivateKey }

type stdPublic struct{ k hpke.PublicKey }

func (k stdKEM) derive(ikm []byte) ([]byte, kemPrivateKey, error) {
	sk, err := k.scheme().DeriveKeyPair(ikm)
	if err != nil {
		return nil, nil, err
	}
	enc, err := sk.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("serialise private key: %w", err)
	}
	return enc, stdPrivate{sk}, nil
}

func (k stdKEM) newPrivate(b []byte) (kemPrivateKey, error) {
	nsk := map[stdKEM]int{kemP256: 32, kemP384: 48, kemP521: 66}[k]
	if len(b) < nsk {
		padded := make([]byte, nsk)
		copy(padded[nsk-len(b):], b)
		b = padded
	}
	sk, err := k.scheme().NewPrivateKey(b)
	if err != nil {
		return nil, err
	}
	return stdPrivate{sk}, nil
}

func (k stdKEM) newPublic(b []byte) (kemPublicKey, error) {
	pk, err := k.scheme().NewPublicKey(b)
	if err != nil {
		return nil, err
	}
	return stdPublic{pk}, nil
}

func (k stdPrivate) public() ([]byte, kemPublicKey) {
	pk := k.k.PublicKey()
	return pk.Bytes(), stdPublic{pk}
}

func (k stdPublic) seal(s *Suite, info, plaintext []byte) ([]byte, []byte, error) {
	enc, sender, err := hpke.NewSender(k.k, hpkeKDF(s), hpkeAEAD(s), info)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	ct, err := sender.Seal(nil, plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke seal: %w", err)
	}
	return enc, ct, nil
}

func (k stdPrivate) open(s *Suite, enc, info, ciphertext []byte) ([]byte, error) {
	r, err := hpke.NewRecipient(enc, k.k, hpkeKDF(s), hpkeAEAD(s), info)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke setup: %v", ErrDecrypt, err)
	}
	pt, err := r.Open(nil, ciphertext)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// x448KEM is DHKEM(X448, HKDF-SHA512), taken from circl. Its key derivation
// is done here because circl's DeriveKeyPair insists on a 56-byte seed,
// whereas RFC 9180 (and MLS, which derives from 64-byte secrets) accepts
// input keying material of any length.
type x448KEM struct{}

const kemX448 = 0x0021

type x448Private struct{ k circlkem.PrivateKey }

type x448Public struct{ k circlkem.PublicKey }

func x448Scheme() circlkem.Scheme { return circlhpke.KEM_X448_HKDF_SHA512.Scheme() }

func (x x448KEM) derive(ikm []byte) ([]byte, kemPrivateKey, error) {
	suiteID := []byte{'K', 'E', 'M', 0, kemX448}
	prk := labeledExtract(kdfSHA512, suiteID, nil, "dkp_prk", ikm)
	sk := labeledExpand(kdfSHA512, suiteID, prk, "sk", nil, x448.Size)
	k, err := x.newPrivate(sk)
	return sk, k, err
}

func (x448KEM) newPrivate(b []byte) (kemPrivateKey, error) {
	if len(b) != x448.Size {
		return nil, fmt.Errorf("X448 key is %d bytes, want %d", len(b), x448.Size)
	}
	sk, err := x448Scheme().UnmarshalBinaryPrivateKey(b)
	if err != nil {
		return nil, err
	}
	return x448Private{sk}, nil
}

func (x448KEM) newPublic(b []byte) (kemPublicKey, error) {
	if len(b) != x448.Size {
		return nil, fmt.Errorf("X448 key is %d bytes, want %d", len(b), x448.Size)
	}
	pk, err := x448Scheme().UnmarshalBinaryPublicKey(b)
	if err != nil {
		return nil, err
	}
	return x448Public{pk}, nil
}

func (k x448Private) public() ([]byte, kemPublicKey) {
	pk := k.k.Public()
	enc, err := pk.MarshalBinary()
	if err != nil {
		panic("suite: X448 public key has no encoding: " + err.Error())
	}
	return enc, x448Public{pk}
}

func circlSuite(s *Suite) circlhpke.Suite {
	return circlhpke.NewSuite(circlhpke.KEM_X448_HKDF_SHA512, circlhpke.KDF_HKDF_SHA512, circlhpke.AEAD(s.aead.id))
}

// sealer sets up a circl sender context to k.
func (k x448Public) sealer(s *Suite, info []byte) ([]byte, circlhpke.Sealer, error) {
	snd, err := circlSuite(s).NewSender(k.k, info)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	enc, sealer, err := snd.Setup(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	return enc, sealer, nil
}

// opener sets up a circl receiver context for enc.
func (k x448Private) opener(s *Suite, enc, info []byte) (circlhpke.Opener, error) {
	rcv, err := circlSuite(s).NewReceiver(k.k, info)
	if err != nil {
		return nil, fmt.Errorf("hpke setup: %w", err)
	}
	opener, err := rcv.Setup(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke setup: %v", ErrDecrypt, err)
	}
	return opener, nil
}

func (k x448Public) seal(s *Suite, info, plaintext []byte) ([]byte, []byte, error) {
	enc, sealer, err := k.sealer(s, info)
	if err != nil {
		return nil, nil, err
	}
	ct, err := sealer.Seal(plaintext, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke seal: %w", err)
	}
	return enc, ct, nil
}

func (k x448Private) open(s *Suite, enc, info, ciphertext []byte) ([]byte, error) {
	opener, err := k.opener(s, enc, info)
	if err != nil {
		return nil, err
	}
	pt, err := opener.Open(ciphertext, nil)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
