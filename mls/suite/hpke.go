package suite

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"fmt"

	"github.com/cloudflare/circl/dh/x448"
	circlhpke "github.com/cloudflare/circl/hpke"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// kem is one HPKE KEM together with the single-shot base-mode HPKE that MLS
// uses (RFC 9420 §5.1.3). Keys are serialised bytes.
type kem interface {
	deriveKeyPair(ikm []byte) (priv, pub []byte, err error)
	publicKey(priv []byte) ([]byte, error)
	validatePublicKey(pub []byte) error
	seal(s *Suite, pub, info, plaintext []byte) (enc, ciphertext []byte, err error)
	open(s *Suite, priv, enc, info, ciphertext []byte) ([]byte, error)
	exportSender(s *Suite, pub []byte, exporterContext string, length int) (enc, secret []byte, err error)
	exportReceiver(s *Suite, priv, enc []byte, exporterContext string, length int) ([]byte, error)
}

// stdKEM is a DHKEM from the standard library's crypto/hpke.
type stdKEM uint16

const (
	kemP256   stdKEM = 0x0010
	kemP384   stdKEM = 0x0011
	kemP521   stdKEM = 0x0012
	kemX25519 stdKEM = 0x0020
)

func (k stdKEM) scheme() hpke.KEM {
	switch k {
	case kemP256:
		return hpke.DHKEM(ecdh.P256())
	case kemP384:
		return hpke.DHKEM(ecdh.P384())
	case kemP521:
		return hpke.DHKEM(ecdh.P521())
	default:
		return hpke.DHKEM(ecdh.X25519())
	}
}

// privateKey parses a serialised private key. NIST-curve scalars shorter
// than Nsk are left-padded: some implementations (and the official vectors,
// for P-521) drop leading zero bytes, which does not change the integer.
func (k stdKEM) privateKey(priv []byte) (hpke.PrivateKey, error) {
	nsk := map[stdKEM]int{kemP256: 32, kemP384: 48, kemP521: 66}[k]
	if len(priv) < nsk {
		padded := make([]byte, nsk)
		copy(padded[nsk-len(priv):], priv)
		priv = padded
	}
	return k.scheme().NewPrivateKey(priv)
}

func (k stdKEM) deriveKeyPair(ikm []byte) ([]byte, []byte, error) {
	sk, err := k.scheme().DeriveKeyPair(ikm)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke derive key pair: %w", err)
	}
	priv, err := sk.Bytes()
	if err != nil {
		return nil, nil, fmt.Errorf("hpke serialise private key: %w", err)
	}
	return priv, sk.PublicKey().Bytes(), nil
}

func (k stdKEM) publicKey(priv []byte) ([]byte, error) {
	sk, err := k.privateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("hpke private key: %w", err)
	}
	return sk.PublicKey().Bytes(), nil
}

func (k stdKEM) validatePublicKey(pub []byte) error {
	if _, err := k.scheme().NewPublicKey(pub); err != nil {
		return fmt.Errorf("hpke public key: %w", err)
	}
	return nil
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

func (k stdKEM) seal(s *Suite, pub, info, plaintext []byte) ([]byte, []byte, error) {
	pk, err := k.scheme().NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke public key: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, hpkeKDF(s), hpkeAEAD(s), info)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	ct, err := sender.Seal(nil, plaintext)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke seal: %w", err)
	}
	return enc, ct, nil
}

func (k stdKEM) open(s *Suite, priv, enc, info, ciphertext []byte) ([]byte, error) {
	sk, err := k.privateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("hpke private key: %w", err)
	}
	r, err := hpke.NewRecipient(enc, sk, hpkeKDF(s), hpkeAEAD(s), info)
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

func (x448KEM) deriveKeyPair(ikm []byte) ([]byte, []byte, error) {
	suiteID := []byte{'K', 'E', 'M', 0, kemX448}
	extractInput := append(append(append([]byte("HPKE-v1"), suiteID...), "dkp_prk"...), ikm...)
	prk, err := hkdf.Extract(sha512.New, extractInput, nil)
	if err != nil {
		return nil, nil, err
	}
	info := binary.BigEndian.AppendUint16(nil, x448.Size)
	info = append(append(append(info, "HPKE-v1"...), suiteID...), "sk"...)
	sk, err := hkdf.Expand(sha512.New, prk, string(info), x448.Size)
	if err != nil {
		return nil, nil, err
	}
	pub, err := x448KEM{}.publicKey(sk)
	return sk, pub, err
}

func (x448KEM) publicKey(priv []byte) ([]byte, error) {
	if len(priv) != x448.Size {
		return nil, fmt.Errorf("hpke private key: X448 key is %d bytes, want %d", len(priv), x448.Size)
	}
	var sk, pk x448.Key
	copy(sk[:], priv)
	x448.KeyGen(&pk, &sk)
	return pk[:], nil
}

func (x448KEM) validatePublicKey(pub []byte) error {
	if len(pub) != x448.Size {
		return fmt.Errorf("hpke public key: X448 key is %d bytes, want %d", len(pub), x448.Size)
	}
	return nil
}

func (x448KEM) circlSuite(s *Suite) circlhpke.Suite {
	return circlhpke.NewSuite(circlhpke.KEM_X448_HKDF_SHA512, circlhpke.KDF_HKDF_SHA512, circlhpke.AEAD(s.aead.id))
}

func (k x448KEM) seal(s *Suite, pub, info, plaintext []byte) ([]byte, []byte, error) {
	pk, err := circlhpke.KEM_X448_HKDF_SHA512.Scheme().UnmarshalBinaryPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke public key: %w", err)
	}
	snd, err := k.circlSuite(s).NewSender(pk, info)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	enc, sealer, err := snd.Setup(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke setup: %w", err)
	}
	ct, err := sealer.Seal(plaintext, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("hpke seal: %w", err)
	}
	return enc, ct, nil
}

func (k x448KEM) open(s *Suite, priv, enc, info, ciphertext []byte) ([]byte, error) {
	sk, err := circlhpke.KEM_X448_HKDF_SHA512.Scheme().UnmarshalBinaryPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("hpke private key: %w", err)
	}
	rcv, err := k.circlSuite(s).NewReceiver(sk, info)
	if err != nil {
		return nil, fmt.Errorf("hpke setup: %w", err)
	}
	opener, err := rcv.Setup(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: hpke setup: %v", ErrDecrypt, err)
	}
	pt, err := opener.Open(ciphertext, nil)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// DeriveKeyPair derives an HPKE key pair from a secret (RFC 9180
// DeriveKeyPair), as MLS does from node and path secrets.
func (s *Suite) DeriveKeyPair(ikm []byte) (priv, pub []byte, err error) {
	return s.kem.deriveKeyPair(ikm)
}

// GenerateKeyPair returns a fresh random HPKE key pair.
func (s *Suite) GenerateKeyPair() (priv, pub []byte, err error) {
	seed := make([]byte, s.HashSize())
	if _, err := rand.Read(seed); err != nil {
		return nil, nil, err
	}
	return s.kem.deriveKeyPair(seed)
}

// HPKEPublicKey returns the public key of an HPKE private key.
func (s *Suite) HPKEPublicKey(priv []byte) ([]byte, error) { return s.kem.publicKey(priv) }

// ValidateHPKEPublicKey checks that pub is a valid encoded public key.
func (s *Suite) ValidateHPKEPublicKey(pub []byte) error { return s.kem.validatePublicKey(pub) }

func encryptContext(label string, context []byte) []byte {
	w := codec.NewWriter(len(labelPrefix) + len(label) + len(context) + 8)
	w.Opaque([]byte(labelPrefix + label))
	w.Opaque(context)
	return w.Bytes()
}

// EncryptWithLabel implements RFC 9420 §5.1.3: HPKE SealBase with
// info = EncryptContext{label, context} and empty aad.
func (s *Suite) EncryptWithLabel(pub []byte, label string, context, plaintext []byte) (kemOutput, ciphertext []byte, err error) {
	return s.kem.seal(s, pub, encryptContext(label, context), plaintext)
}

// DecryptWithLabel reverses EncryptWithLabel. A ciphertext that does not
// authenticate yields an error wrapping ErrDecrypt.
func (s *Suite) DecryptWithLabel(priv []byte, label string, context, kemOutput, ciphertext []byte) ([]byte, error) {
	return s.kem.open(s, priv, kemOutput, encryptContext(label, context), ciphertext)
}
