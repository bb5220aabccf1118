package seal

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the size of a master key in bytes.
const KeySize = 32

// KeyID names a master key in the values sealed under it. It is derived
// from the key, so it needs no configuration, and reveals nothing about it.
type KeyID [8]byte

func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// Key is a master key. Its String method never shows the secret.
type Key struct {
	id     KeyID
	secret [KeySize]byte
}

// GenerateKey returns a new random master key.
func GenerateKey() (Key, error) {
	var b [KeySize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Key{}, fmt.Errorf("seal: generate key: %w", err)
	}
	return newKey(b), nil
}

// ParseKey decodes a master key from base64 (standard alphabet, padded or
// not): exactly 32 bytes.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return Key{}, errors.New("seal: key is not base64")
	}
	if len(b) != KeySize {
		return Key{}, fmt.Errorf("seal: key is %d bytes, want %d", len(b), KeySize)
	}
	return newKey([KeySize]byte(b)), nil
}

func newKey(secret [KeySize]byte) Key {
	k := Key{secret: secret}
	copy(k.id[:], derive(secret, "key id", len(k.id)))
	return k
}

// ID returns the key's id.
func (k Key) ID() KeyID { return k.id }

// Encode returns the key in the form ParseKey reads. It is secret: only
// mls-appservice -g writes it, into the configuration.
func (k Key) Encode() string { return base64.StdEncoding.EncodeToString(k.secret[:]) }

// String names the key by its id only.
func (k Key) String() string { return "seal.Key(" + k.id.String() + ")" }

// IsZero reports whether k is the zero Key (no key configured).
func (k Key) IsZero() bool { return k.id == KeyID{} && k.secret == [KeySize]byte{} }

const label = "mls-appservice seal v1 "

func derive(secret [KeySize]byte, info string, n int) []byte {
	out, err := hkdf.Key(sha256.New, secret[:], nil, label+info, n)
	if err != nil {
		panic("seal: hkdf: " + err.Error()) // only for lengths beyond 255*32
	}
	return out
}

// Purpose names a kind of secret, such as "keys.signature_key". Each
// purpose seals under its own key derived from the master key. Purposes
// are constants of the package that owns the secret.
type Purpose string

// Binding names the row a sealed value belongs to: its table and the
// values of its primary key, in the key's column order. Opening requires
// the same binding that sealing used.
type Binding struct {
	Table string
	Key   []string
}

// Row returns the binding of a row of table with primary key key.
func Row(table string, key ...string) Binding { return Binding{Table: table, Key: key} }

// Errors of Open. Every failure to open matches ErrOpen.
var (
	ErrOpen       = errors.New("seal: value does not open")
	ErrMalformed  = fmt.Errorf("%w: malformed", ErrOpen)
	ErrUnknownKey = fmt.Errorf("%w: sealed under a key not configured", ErrOpen)
)

const (
	version    = 1
	headerSize = 1 + len(KeyID{})
	nonceSize  = chacha20poly1305.NonceSizeX
	// Overhead is how many bytes a sealed value adds to its plaintext.
	Overhead = headerSize + nonceSize + chacha20poly1305.Overhead
)

// Sealer seals under a current key and opens under it or an old one. It
// is safe for concurrent use.
type Sealer struct {
	current Key
	keys    map[KeyID]Key
	// aeads holds the cipher of each (key, purpose) once derived: the
	// derivation was two thirds of a seal's cost, and a message delivered
	// to n puppets seals n times. Purposes are constants of the code and
	// an id is looked up in keys first, so it stays small.
	aeads sync.Map // purposeKey -> cipher.AEAD
}

type purposeKey struct {
	id KeyID
	p  Purpose
}

// NewSealer returns a Sealer that seals under current and also opens
// values sealed under old (keys being rotated out).
func NewSealer(current Key, old ...Key) (*Sealer, error) {
	if current.IsZero() {
		return nil, errors.New("seal: no current key")
	}
	s := &Sealer{current: current, keys: map[KeyID]Key{current.id: current}}
	for _, k := range old {
		if k.IsZero() {
			return nil, errors.New("seal: zero old key")
		}
		if prev, ok := s.keys[k.id]; ok {
			if subtle.ConstantTimeCompare(prev.secret[:], k.secret[:]) == 1 {
				return nil, fmt.Errorf("seal: key %s is given twice", k.id)
			}
			return nil, fmt.Errorf("seal: two keys share the id %s", k.id)
		}
		s.keys[k.id] = k
	}
	return s, nil
}

// Current returns the id of the key new values are sealed under.
func (s *Sealer) Current() KeyID { return s.current.id }

// Seal encrypts plaintext for storage in the row b, as a secret of purpose p.
func (s *Sealer) Seal(p Purpose, b Binding, plaintext []byte) ([]byte, error) {
	if p == "" {
		return nil, errors.New("seal: empty purpose")
	}
	out := make([]byte, headerSize+nonceSize, Overhead+len(plaintext))
	out[0] = version
	copy(out[1:headerSize], s.current.id[:])
	nonce := out[headerSize:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	aead := s.aead(s.current, p)
	return aead.Seal(out, nonce, plaintext, additionalData(out[:headerSize], p, b)), nil
}

// Open decrypts a value sealed by Seal with the same purpose and binding.
func (s *Sealer) Open(p Purpose, b Binding, sealed []byte) ([]byte, error) {
	id, err := KeyIDOf(sealed)
	if err != nil {
		return nil, err
	}
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(sealed))
	}
	k, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w (key id %s)", ErrUnknownKey, id)
	}
	aead := s.aead(k, p)
	nonce := sealed[headerSize : headerSize+nonceSize]
	plain, err := aead.Open(nil, nonce, sealed[headerSize+nonceSize:], additionalData(sealed[:headerSize], p, b))
	if err != nil {
		return nil, fmt.Errorf("%w: purpose %s, row %s: authentication failed", ErrOpen, p, b)
	}
	return plain, nil
}

// NeedsReseal reports whether a sealed value is under a key other than the
// current one (or cannot be read at all).
func (s *Sealer) NeedsReseal(sealed []byte) bool {
	id, err := KeyIDOf(sealed)
	return err != nil || id != s.current.id
}

// KeyIDOf returns the id of the key a value was sealed under.
func KeyIDOf(sealed []byte) (KeyID, error) {
	if len(sealed) < headerSize {
		return KeyID{}, fmt.Errorf("%w: %d bytes", ErrMalformed, len(sealed))
	}
	if sealed[0] != version {
		return KeyID{}, fmt.Errorf("%w: version %d", ErrMalformed, sealed[0])
	}
	return KeyID(sealed[1:headerSize]), nil
}

// aead returns the cipher of key k for purpose p: XChaCha20-Poly1305
// under a key derived from k for p.
func (s *Sealer) aead(k Key, p Purpose) cipher.AEAD {
	pk := purposeKey{k.id, p}
	if a, ok := s.aeads.Load(pk); ok {
		return a.(cipher.AEAD)
	}
	a, err := chacha20poly1305.NewX(derive(k.secret, "purpose "+string(p), chacha20poly1305.KeySize))
	if err != nil {
		panic("seal: " + err.Error()) // the key size is fixed
	}
	s.aeads.Store(pk, a)
	return a
}

// additionalData encodes the header, purpose and binding unambiguously:
// every string is prefixed with its length.
func additionalData(header []byte, p Purpose, b Binding) []byte {
	var buf bytes.Buffer
	buf.WriteString(label)
	buf.Write(header)
	put := func(s string) {
		buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		buf.WriteString(s)
	}
	put(string(p))
	put(b.Table)
	buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b.Key))))
	for _, k := range b.Key {
		put(k)
	}
	return buf.Bytes()
}

func (b Binding) String() string { return b.Table + "(" + strings.Join(b.Key, ", ") + ")" }
