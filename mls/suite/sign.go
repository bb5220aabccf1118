package suite

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// ErrBadSignature is returned when a signature does not verify. It is the
// only such sentinel of the MLS packages: the packages above this one wrap
// it with what was signed, also when the key that should verify a
// signature does not parse, since such a key cannot have made any.
var ErrBadSignature = errors.New("signature verification failed")

// SignaturePrivateKey is a parsed signature private key of one suite,
// together with its public key, which is computed once: when the key is
// generated, or on first use of a key parsed from an EdDSA seed. It is
// immutable and safe for concurrent use.
type SignaturePrivateKey struct {
	suite *Suite
	// seed is an EdDSA seed not yet expanded (nil once parsed otherwise):
	// expanding it costs a hash and a base multiplication, and a service
	// that loads the private parts of 10,000 members of a group to commit
	// signs with one of them (half a second at every commit).
	seed   []byte
	expand sync.Once
	key    signingKey
	pub    *SignaturePublicKey
}

// SignaturePublicKey is a parsed signature public key of one suite. It is
// immutable and safe for concurrent use.
type SignaturePublicKey struct {
	suite *Suite
	enc   []byte
	key   verifyingKey
}

// signatureScheme is one signature algorithm: it makes and parses keys.
type signatureScheme interface {
	generate() (signingKey, error)
	// newPrivate parses a private key in the encoding of the test
	// vectors: a raw Ed25519/Ed448 seed or a big-endian ECDSA scalar.
	newPrivate(b []byte) (signingKey, error)
	// newPublic parses a public key: a raw Ed25519/Ed448 key or an
	// uncompressed ECDSA point.
	newPublic(b []byte) (verifyingKey, error)
}

// signingKey is a parsed private key of one scheme.
type signingKey interface {
	sign(msg []byte) ([]byte, error)
	bytes() []byte
	// public returns the encoded public key and its parsed form.
	public() ([]byte, verifyingKey)
}

type verifyingKey interface {
	verify(msg, sig []byte) bool
}

// GenerateSignatureKey returns a fresh random signature key.
func (s *Suite) GenerateSignatureKey() (*SignaturePrivateKey, error) {
	k, err := s.sig.generate()
	if err != nil {
		return nil, fmt.Errorf("generate signature key: %w", err)
	}
	return s.newSignaturePrivateKey(k), nil
}

// NewSignaturePrivateKey parses a signature private key: a 32-byte Ed25519
// or 57-byte Ed448 seed, or a big-endian ECDSA scalar (leading zero bytes
// may be missing, as some implementations and the official vectors drop
// them). A 64-byte Ed25519 key (seed and public key) is accepted when its
// halves agree.
func (s *Suite) NewSignaturePrivateKey(b []byte) (*SignaturePrivateKey, error) {
	if e, ok := s.sig.(*eddsaScheme); ok && len(b) == e.seedSize {
		// Any seed is a key: expanded when first used (ready).
		return &SignaturePrivateKey{suite: s, seed: bytes.Clone(b)}, nil
	}
	k, err := s.sig.newPrivate(b)
	if err != nil {
		return nil, fmt.Errorf("signature private key: %w", err)
	}
	return s.newSignaturePrivateKey(k), nil
}

func (s *Suite) newSignaturePrivateKey(k signingKey) *SignaturePrivateKey {
	sk := &SignaturePrivateKey{suite: s}
	sk.expand.Do(func() { sk.set(k) })
	return sk
}

func (k *SignaturePrivateKey) set(key signingKey) {
	enc, pub := key.public()
	k.key, k.pub = key, &SignaturePublicKey{suite: k.suite, enc: enc, key: pub}
}

// ready expands a seed parsed by NewSignaturePrivateKey, once.
func (k *SignaturePrivateKey) ready() {
	k.expand.Do(func() {
		key, err := k.suite.sig.newPrivate(k.seed)
		if err != nil {
			// NewSignaturePrivateKey checked the seed's length, the
			// only thing an EdDSA seed can get wrong.
			panic("suite: a checked EdDSA seed does not expand: " + err.Error())
		}
		k.set(key)
	})
}

// NewSignaturePublicKey parses a signature public key in the encoding
// LeafNode.signature_key uses (RFC 9420 §5.1.1): a raw Ed25519 or Ed448
// key, or an uncompressed ECDSA point.
func (s *Suite) NewSignaturePublicKey(b []byte) (*SignaturePublicKey, error) {
	k, err := s.sig.newPublic(b)
	if err != nil {
		return nil, fmt.Errorf("signature public key: %w", err)
	}
	return &SignaturePublicKey{suite: s, enc: append([]byte(nil), b...), key: k}, nil
}

// Suite returns the key's cipher suite.
func (k *SignaturePrivateKey) Suite() *Suite { return k.suite }

// Public returns the key's public key.
func (k *SignaturePrivateKey) Public() *SignaturePublicKey {
	k.ready()
	return k.pub
}

// Bytes returns the encoding NewSignaturePrivateKey parses, as a new
// slice. It is secret.
func (k *SignaturePrivateKey) Bytes() []byte {
	if k.seed != nil {
		return bytes.Clone(k.seed)
	}
	return k.key.bytes()
}

// Equal reports whether k and x are the same key of the same suite, in
// constant time for keys of one suite.
func (k *SignaturePrivateKey) Equal(x *SignaturePrivateKey) bool {
	return x != nil && k.suite == x.suite && subtle.ConstantTimeCompare(k.Bytes(), x.Bytes()) == 1
}

// SignWithLabel implements RFC 9420 §5.1.2:
//
//	SignContent = struct { opaque label<V> = "MLS 1.0 " + Label; opaque content<V>; }
func (k *SignaturePrivateKey) SignWithLabel(label string, content []byte) ([]byte, error) {
	k.ready()
	sig, err := k.key.sign(signContent(label, content))
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", label, err)
	}
	return sig, nil
}

// Suite returns the key's cipher suite.
func (k *SignaturePublicKey) Suite() *Suite { return k.suite }

// Bytes returns the key's encoding. The slice is shared and must not be
// modified.
func (k *SignaturePublicKey) Bytes() []byte { return k.enc }

// Equal reports whether k and x encode the same key of the same suite.
func (k *SignaturePublicKey) Equal(x *SignaturePublicKey) bool {
	return x != nil && k.suite == x.suite && string(k.enc) == string(x.enc)
}

// VerifyWithLabel implements RFC 9420 §5.1.2. It returns an error wrapping
// ErrBadSignature when the signature does not verify.
func (k *SignaturePublicKey) VerifyWithLabel(label string, content, signature []byte) error {
	if !k.key.verify(signContent(label, content), signature) {
		return fmt.Errorf("%w: %s", ErrBadSignature, label)
	}
	return nil
}

// VerifyWithLabel verifies signature under a signature public key in the
// encoding a LeafNode or an ExternalSender carries, parsing it on the way:
// for keys that come with the message and serve once. A key that does not
// parse cannot have made the signature, so that too fails with
// ErrBadSignature.
func (s *Suite) VerifyWithLabel(signatureKey []byte, label string, content, signature []byte) error {
	k, err := s.sig.newPublic(signatureKey)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadSignature, label, err)
	}
	if !k.verify(signContent(label, content), signature) {
		return fmt.Errorf("%w: %s", ErrBadSignature, label)
	}
	return nil
}

// A SignatureCheck is one signature for VerifyBatch: the arguments of
// Suite.VerifyWithLabel.
type SignatureCheck struct {
	// Key is the signature public key in the encoding a LeafNode carries.
	Key       []byte
	Label     string
	Content   []byte
	Signature []byte
}

// Verify verifies one check: Suite.VerifyWithLabel with its arguments.
func (s *Suite) Verify(c SignatureCheck) error {
	return s.VerifyWithLabel(c.Key, c.Label, c.Content, c.Signature)
}

// VerifyBatch verifies every check as Suite.VerifyWithLabel would and
// returns the index of the first that does not verify, with its error, or
// -1 and nil when all do. In the Ed25519 suites the checks are verified
// together (ed25519.go), for about half the cost of verifying them one by
// one (30 against 64 µs a signature in batches of 64 here), a quarter
// when one key made them all, and only when that fails one by one, to
// find the first that does not verify; the other suites verify them one
// by one.
func (s *Suite) VerifyBatch(checks []SignatureCheck) (int, error) {
	if s.sig == ed25519Scheme && len(checks) > 1 {
		keys := make([][]byte, len(checks))
		msgs := make([][]byte, len(checks))
		sigs := make([][]byte, len(checks))
		for i, c := range checks {
			keys[i], msgs[i], sigs[i] = c.Key, signContent(c.Label, c.Content), c.Signature
		}
		if ed25519VerifyAll(keys, msgs, sigs) {
			return -1, nil
		}
	}
	for i, c := range checks {
		if err := s.Verify(c); err != nil {
			return i, err
		}
	}
	return -1, nil
}

func signContent(label string, content []byte) []byte {
	w := codec.NewWriter(len(labelPrefix) + len(label) + len(content) + 8)
	w.Opaque([]byte(labelPrefix + label))
	w.Opaque(content)
	return w.Bytes()
}

// EdDSA: Ed25519 (suites 1 and 3) and Ed448 (suites 4 and 6, from circl).
// Private keys are encoded as their seeds, public keys as raw points.

type eddsaScheme struct {
	name                 string
	seedSize, publicSize int
	// expand turns a seed into the key the sign function takes, whose
	// last publicSize bytes are the public key.
	expand func(seed []byte) []byte
	sign   func(key, msg []byte) []byte
	// verifier parses a public key of publicSize bytes.
	verifier func(pub []byte) (verifyingKey, error)
}

var (
	ed25519Scheme = &eddsaScheme{
		name: "ed25519", seedSize: ed25519.SeedSize, publicSize: ed25519.PublicKeySize,
		expand:   func(seed []byte) []byte { return ed25519.NewKeyFromSeed(seed) },
		sign:     func(key, msg []byte) []byte { return ed25519.Sign(key, msg) },
		verifier: newEd25519Public, // ed25519.go
	}
	ed448Scheme = &eddsaScheme{
		name: "ed448", seedSize: ed448.SeedSize, publicSize: ed448.PublicKeySize,
		expand:   func(seed []byte) []byte { return ed448.NewKeyFromSeed(seed) },
		sign:     func(key, msg []byte) []byte { return ed448.Sign(key, msg, "") },
		verifier: func(pub []byte) (verifyingKey, error) { return ed448Public(pub), nil },
	}
)

type eddsaKey struct {
	scheme *eddsaScheme
	key    []byte // seed followed by the public key
}

type ed448Public []byte

func (e *eddsaScheme) generate() (signingKey, error) {
	seed := make([]byte, e.seedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	defer clear(seed)
	return eddsaKey{e, e.expand(seed)}, nil
}

// newPrivate also accepts the seed followed by the public key, the form Go's
// ed25519.PrivateKey has. Signing with a public half that does not belong
// to the seed would leak the key, so the halves must agree.
func (e *eddsaScheme) newPrivate(b []byte) (signingKey, error) {
	switch len(b) {
	case e.seedSize:
		return eddsaKey{e, e.expand(b)}, nil
	case e.seedSize + e.publicSize:
		k := e.expand(b[:e.seedSize])
		if subtle.ConstantTimeCompare(k, b) != 1 {
			return nil, fmt.Errorf("%s private key: public half does not match the seed", e.name)
		}
		return eddsaKey{e, k}, nil
	}
	return nil, fmt.Errorf("%s private key is %d bytes", e.name, len(b))
}

func (e *eddsaScheme) newPublic(b []byte) (verifyingKey, error) {
	if len(b) != e.publicSize {
		return nil, fmt.Errorf("%s public key is %d bytes", e.name, len(b))
	}
	return e.verifier(b)
}

func (k eddsaKey) sign(msg []byte) ([]byte, error) { return k.scheme.sign(k.key, msg), nil }
func (k eddsaKey) bytes() []byte                   { return append([]byte(nil), k.key[:k.scheme.seedSize]...) }
func (k eddsaKey) public() ([]byte, verifyingKey) {
	pub := k.key[k.scheme.seedSize:]
	v, err := k.scheme.verifier(pub)
	if err != nil {
		panic("suite: " + k.scheme.name + " public key of a private key does not parse: " + err.Error())
	}
	return pub, v
}

func (k ed448Public) verify(msg, sig []byte) bool { return ed448.Verify([]byte(k), msg, sig, "") }

// ECDSA (suites 2, 5 and 7): signatures are DER-encoded as RFC 9420 §5.1.2
// requires, public keys are uncompressed points.

type ecdsaScheme struct {
	curve elliptic.Curve
	hash  crypto.Hash
}

var (
	ecdsaP256 = ecdsaScheme{elliptic.P256(), crypto.SHA256}
	ecdsaP384 = ecdsaScheme{elliptic.P384(), crypto.SHA384}
	ecdsaP521 = ecdsaScheme{elliptic.P521(), crypto.SHA512}
)

type ecdsaKey struct {
	k    *ecdsa.PrivateKey
	hash crypto.Hash
}

type ecdsaPublic struct {
	k    *ecdsa.PublicKey
	hash crypto.Hash
}

func (e ecdsaScheme) generate() (signingKey, error) {
	k, err := ecdsa.GenerateKey(e.curve, rand.Reader)
	if err != nil {
		return nil, err
	}
	return ecdsaKey{k, e.hash}, nil
}

// newPrivate accepts a big-endian scalar shorter than the curve's size:
// some implementations (and the official vectors, for P-521) drop leading
// zero bytes, which is harmless for an integer.
func (e ecdsaScheme) newPrivate(b []byte) (signingKey, error) {
	size := (e.curve.Params().BitSize + 7) / 8
	if len(b) < size {
		padded := make([]byte, size)
		copy(padded[size-len(b):], b)
		b = padded
	}
	k, err := ecdsa.ParseRawPrivateKey(e.curve, b)
	if err != nil {
		return nil, err
	}
	return ecdsaKey{k, e.hash}, nil
}

func (e ecdsaScheme) newPublic(b []byte) (verifyingKey, error) {
	k, err := ecdsa.ParseUncompressedPublicKey(e.curve, b)
	if err != nil {
		return nil, err
	}
	return ecdsaPublic{k, e.hash}, nil
}

func digest(h crypto.Hash, msg []byte) []byte {
	d := h.New()
	d.Write(msg)
	return d.Sum(nil)
}

// sign makes a deterministic signature (RFC 6979), like Ed25519's and
// Ed448's: the same key and message always give the same bytes, so that a
// KeyPackage re-derived from its secret (group.DeriveKeyPackage) is the
// one that was published, and has the same KeyPackageRef.
func (k ecdsaKey) sign(msg []byte) ([]byte, error) {
	return k.k.Sign(nil, digest(k.hash, msg), k.hash)
}

func (k ecdsaKey) bytes() []byte {
	b, err := k.k.Bytes()
	if err != nil {
		panic("suite: ecdsa key of a suite curve has no encoding: " + err.Error())
	}
	return b
}

func (k ecdsaKey) public() ([]byte, verifyingKey) {
	pub, err := k.k.PublicKey.Bytes()
	if err != nil {
		panic("suite: ecdsa public key of a suite curve has no encoding: " + err.Error())
	}
	return pub, ecdsaPublic{&k.k.PublicKey, k.hash}
}

func (k ecdsaPublic) verify(msg, sig []byte) bool {
	return ecdsa.VerifyASN1(k.k, digest(k.hash, msg), sig)
}
