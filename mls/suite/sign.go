package suite

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// ErrBadSignature is returned when a signature does not verify.
var ErrBadSignature = errors.New("signature verification failed")

// signer is one signature scheme. Private keys are in the vectors'
// encodings: raw Ed25519/Ed448 seeds, big-endian ECDSA scalars.
type signer interface {
	generate() (priv, pub []byte, err error)
	public(priv []byte) ([]byte, error)
	sign(priv, msg []byte) ([]byte, error)
	verify(pub, msg, sig []byte) bool
}

type ed25519Signer struct{}

func (ed25519Signer) generate() ([]byte, []byte, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return priv.Seed(), pub, nil
}

func (ed25519Signer) key(priv []byte) (ed25519.PrivateKey, error) {
	switch len(priv) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(priv), nil
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(priv), nil
	}
	return nil, fmt.Errorf("ed25519 private key is %d bytes", len(priv))
}

func (e ed25519Signer) public(priv []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return k.Public().(ed25519.PublicKey), nil
}

func (e ed25519Signer) sign(priv, msg []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return ed25519.Sign(k, msg), nil
}

func (ed25519Signer) verify(pub, msg, sig []byte) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
}

type ed448Signer struct{}

func (ed448Signer) generate() ([]byte, []byte, error) {
	pub, priv, err := ed448.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	return priv.Seed(), pub, nil
}

func (ed448Signer) key(priv []byte) (ed448.PrivateKey, error) {
	switch len(priv) {
	case ed448.SeedSize:
		return ed448.NewKeyFromSeed(priv), nil
	case ed448.PrivateKeySize:
		return ed448.PrivateKey(priv), nil
	}
	return nil, fmt.Errorf("ed448 private key is %d bytes", len(priv))
}

func (e ed448Signer) public(priv []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return k.Public().(ed448.PublicKey), nil
}

func (e ed448Signer) sign(priv, msg []byte) ([]byte, error) {
	k, err := e.key(priv)
	if err != nil {
		return nil, err
	}
	return ed448.Sign(k, msg, ""), nil
}

func (ed448Signer) verify(pub, msg, sig []byte) bool {
	return len(pub) == ed448.PublicKeySize && ed448.Verify(pub, msg, sig, "")
}

// ecdsaSigner signs with ECDSA; signatures are DER-encoded as RFC 9420
// §5.1.2 requires, public keys are uncompressed points.
type ecdsaSigner struct {
	curve elliptic.Curve
	hash  crypto.Hash
}

var (
	ecdsaP256 = ecdsaSigner{elliptic.P256(), crypto.SHA256}
	ecdsaP384 = ecdsaSigner{elliptic.P384(), crypto.SHA384}
	ecdsaP521 = ecdsaSigner{elliptic.P521(), crypto.SHA512}
)

func (e ecdsaSigner) generate() ([]byte, []byte, error) {
	k, err := ecdsa.GenerateKey(e.curve, rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	priv, err := k.Bytes()
	if err != nil {
		return nil, nil, err
	}
	pub, err := k.PublicKey.Bytes()
	return priv, pub, err
}

// parse accepts a big-endian scalar shorter than the curve's size: some
// implementations (and the official vectors, for P-521) drop leading zero
// bytes, which is harmless for an integer.
func (e ecdsaSigner) parse(priv []byte) (*ecdsa.PrivateKey, error) {
	size := (e.curve.Params().BitSize + 7) / 8
	if len(priv) < size {
		padded := make([]byte, size)
		copy(padded[size-len(priv):], priv)
		priv = padded
	}
	return ecdsa.ParseRawPrivateKey(e.curve, priv)
}

func (e ecdsaSigner) public(priv []byte) ([]byte, error) {
	k, err := e.parse(priv)
	if err != nil {
		return nil, err
	}
	return k.PublicKey.Bytes()
}

func (e ecdsaSigner) digest(msg []byte) []byte {
	h := e.hash.New()
	h.Write(msg)
	return h.Sum(nil)
}

func (e ecdsaSigner) sign(priv, msg []byte) ([]byte, error) {
	k, err := e.parse(priv)
	if err != nil {
		return nil, err
	}
	return ecdsa.SignASN1(rand.Reader, k, e.digest(msg))
}

func (e ecdsaSigner) verify(pub, msg, sig []byte) bool {
	k, err := ecdsa.ParseUncompressedPublicKey(e.curve, pub)
	if err != nil {
		return false
	}
	return ecdsa.VerifyASN1(k, e.digest(msg), sig)
}

// GenerateSignatureKeyPair returns a fresh signature key pair.
func (s *Suite) GenerateSignatureKeyPair() (priv, pub []byte, err error) {
	return s.sig.generate()
}

// SignaturePublicKey returns the public key of a signature private key.
func (s *Suite) SignaturePublicKey(priv []byte) ([]byte, error) {
	pub, err := s.sig.public(priv)
	if err != nil {
		return nil, fmt.Errorf("signature private key: %w", err)
	}
	return pub, nil
}

func signContent(label string, content []byte) []byte {
	w := codec.NewWriter(len(labelPrefix) + len(label) + len(content) + 8)
	w.Opaque([]byte(labelPrefix + label))
	w.Opaque(content)
	return w.Bytes()
}

// SignWithLabel implements RFC 9420 §5.1.2.
func (s *Suite) SignWithLabel(priv []byte, label string, content []byte) ([]byte, error) {
	sig, err := s.sig.sign(priv, signContent(label, content))
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", label, err)
	}
	return sig, nil
}

// VerifyWithLabel implements RFC 9420 §5.1.2. It returns an error wrapping
// ErrBadSignature when the signature does not verify.
func (s *Suite) VerifyWithLabel(pub []byte, label string, content, signature []byte) error {
	if !s.sig.verify(pub, signContent(label, content), signature) {
		return fmt.Errorf("%w: %s", ErrBadSignature, label)
	}
	return nil
}
