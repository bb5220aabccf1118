package suite

import (
	"crypto"
	"errors"
	"fmt"
	"hash"
	"sync"

	_ "crypto/sha256" // register the hash functions the suites name
	_ "crypto/sha512"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// ID is a cipher suite number from the IANA "MLS Cipher Suites" registry.
type ID uint16

// The cipher suites of RFC 9420 §17.1.
const (
	X25519AES128GCMSHA256Ed25519        ID = 0x0001
	P256AES128GCMSHA256P256             ID = 0x0002
	X25519ChaCha20Poly1305SHA256Ed25519 ID = 0x0003
	X448AES256GCMSHA512Ed448            ID = 0x0004
	P521AES256GCMSHA512P521             ID = 0x0005
	X448ChaCha20Poly1305SHA512Ed448     ID = 0x0006
	P384AES256GCMSHA384P384             ID = 0x0007
)

// ErrUnsupportedSuite is returned for a suite number this package does not
// implement (including GREASE values).
var ErrUnsupportedSuite = errors.New("unsupported cipher suite")

// Suite bundles the hash, KDF, AEAD, HPKE and signature algorithms of one
// MLS cipher suite.
type Suite struct {
	id   ID
	hash crypto.Hash
	kdf  *kdf
	aead aeadAlg
	kem  kem
	sig  signatureScheme

	pskIDHashOnce sync.Once
	pskIDHash     []byte // of HPKE with the X25519 KEM (x25519.go)
}

var suites = [...]*Suite{
	X25519AES128GCMSHA256Ed25519:        {hash: crypto.SHA256, aead: aes128GCM, kem: x25519KEM{}, sig: ed25519Scheme},
	P256AES128GCMSHA256P256:             {hash: crypto.SHA256, aead: aes128GCM, kem: stdKEM(kemP256), sig: ecdsaP256},
	X25519ChaCha20Poly1305SHA256Ed25519: {hash: crypto.SHA256, aead: chacha20Poly1305, kem: x25519KEM{}, sig: ed25519Scheme},
	X448AES256GCMSHA512Ed448:            {hash: crypto.SHA512, aead: aes256GCM, kem: x448KEM{}, sig: ed448Scheme},
	P521AES256GCMSHA512P521:             {hash: crypto.SHA512, aead: aes256GCM, kem: stdKEM(kemP521), sig: ecdsaP521},
	X448ChaCha20Poly1305SHA512Ed448:     {hash: crypto.SHA512, aead: chacha20Poly1305, kem: x448KEM{}, sig: ed448Scheme},
	P384AES256GCMSHA384P384:             {hash: crypto.SHA384, aead: aes256GCM, kem: stdKEM(kemP384), sig: ecdsaP384},
}

func init() {
	for i, s := range suites {
		if s != nil {
			s.id = ID(i)
			s.kdf = kdfFor(s.hash)
		}
	}
}

// Lookup returns the suite with the given number.
func Lookup(id ID) (*Suite, error) {
	if int(id) < len(suites) && suites[id] != nil {
		return suites[id], nil
	}
	return nil, fmt.Errorf("%w: 0x%04x", ErrUnsupportedSuite, uint16(id))
}

// All returns every implemented suite, in number order.
func All() []*Suite {
	var out []*Suite
	for _, s := range suites {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// ID returns the suite's registry number.
func (s *Suite) ID() ID { return s.id }

func (s *Suite) String() string { return fmt.Sprintf("MLS suite 0x%04x", uint16(s.id)) }

// HashSize returns Nh, the output size of the suite's hash and KDF.
func (s *Suite) HashSize() int { return s.hash.Size() }

// KeySize returns Nk, the AEAD key size.
func (s *Suite) KeySize() int { return s.aead.keySize }

// NonceSize returns Nn, the AEAD nonce size.
func (s *Suite) NonceSize() int { return 12 }

// Hash returns the suite's hash of data.
func (s *Suite) Hash(data []byte) []byte {
	h := s.hash.New()
	h.Write(data)
	return h.Sum(nil)
}

// NewHash returns a new instance of the suite's hash function.
func (s *Suite) NewHash() hash.Hash { return s.hash.New() }

// MAC returns HMAC(key, data) with the suite's hash (RFC 9420 §5.1).
func (s *Suite) MAC(key, data []byte) []byte { return s.kdf.mac(key, data) }

// Extract is HKDF-Extract with the suite's hash.
func (s *Suite) Extract(salt, ikm []byte) []byte { return s.kdf.extract(salt, ikm) }

// Expand is HKDF-Expand with the suite's hash. Lengths are fixed by the
// protocol (at most Nh or Nk bytes), so one past 255·Nh panics.
func (s *Suite) Expand(prk, info []byte, length int) []byte { return s.kdf.expand(prk, info, length) }

const labelPrefix = "MLS 1.0 "

// ExpandWithLabel implements RFC 9420 §8:
//
//	KDFLabel = struct { uint16 length; opaque label<V>; opaque context<V>; }
func (s *Suite) ExpandWithLabel(secret []byte, label string, context []byte, length int) []byte {
	w := codec.NewWriter(2 + 1 + len(labelPrefix) + len(label) + 4 + len(context))
	w.Uint16(uint16(length))
	w.Opaque([]byte(labelPrefix + label))
	w.Opaque(context)
	return s.Expand(secret, w.Bytes(), length)
}

// DeriveSecret is ExpandWithLabel(secret, label, "", Nh).
func (s *Suite) DeriveSecret(secret []byte, label string) []byte {
	return s.ExpandWithLabel(secret, label, nil, s.HashSize())
}

// DeriveTreeSecret is ExpandWithLabel with the generation as context (§9).
func (s *Suite) DeriveTreeSecret(secret []byte, label string, generation uint32, length int) []byte {
	ctx := []byte{byte(generation >> 24), byte(generation >> 16), byte(generation >> 8), byte(generation)}
	return s.ExpandWithLabel(secret, label, ctx, length)
}

// RefHash implements RFC 9420 §5.2:
//
//	RefHashInput = struct { opaque label<V>; opaque value<V>; }
func (s *Suite) RefHash(label string, value []byte) []byte {
	w := codec.NewWriter(len(label) + len(value) + 8)
	w.Opaque([]byte(label))
	w.Opaque(value)
	return s.Hash(w.Bytes())
}

// Seal encrypts with the suite's AEAD.
func (s *Suite) Seal(key, nonce, aad, plaintext []byte) ([]byte, error) {
	a, err := s.aead.new(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != a.NonceSize() {
		return nil, fmt.Errorf("aead seal: nonce is %d bytes, want %d", len(nonce), a.NonceSize())
	}
	return a.Seal(nil, nonce, plaintext, aad), nil
}

// ErrDecrypt is returned when an AEAD or HPKE ciphertext does not
// authenticate.
var ErrDecrypt = errors.New("decryption failed")

// Open decrypts with the suite's AEAD.
func (s *Suite) Open(key, nonce, aad, ciphertext []byte) ([]byte, error) {
	a, err := s.aead.new(key)
	if err != nil {
		return nil, err
	}
	if len(nonce) != a.NonceSize() {
		return nil, fmt.Errorf("aead open: nonce is %d bytes, want %d", len(nonce), a.NonceSize())
	}
	pt, err := a.Open(nil, nonce, ciphertext, aad)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
