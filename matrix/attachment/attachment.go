package attachment

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

const (
	// Version is the only protocol version produced and accepted.
	Version = "v2"
	// Algorithm is the JSON Web Key algorithm of the key.
	Algorithm = "A256CTR"

	keySize   = 32
	ivSize    = aes.BlockSize
	hashSize  = sha256.Size
	blockSize = aes.BlockSize
)

var (
	// ErrBadFile matches every error about a malformed file object
	// (see FormatError).
	ErrBadFile = errors.New("attachment: bad file object")
	// ErrHashMismatch means the downloaded bytes are not the ones the
	// file object names: the media was replaced or corrupted.
	ErrHashMismatch = errors.New("attachment: ciphertext does not match the file object's SHA-256 hash (tampered or corrupted media)")
)

// FormatError is a file object refused by Parse or Decrypt: Field names
// the offending member as a dotted path ("key.alg"), empty for the object
// itself.
type FormatError struct {
	Field   string
	Problem string
}

func (e *FormatError) Error() string {
	if e.Field == "" {
		return "attachment: file object: " + e.Problem
	}
	return "attachment: file object: " + e.Field + ": " + e.Problem
}

// Is makes every FormatError match ErrBadFile.
func (e *FormatError) Is(target error) bool { return target == ErrBadFile }

func formatErr(field, format string, args ...any) error {
	return &FormatError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// File is a checked file object: where an encrypted payload is stored and
// how to verify and open it. The zero value is not usable; a File comes
// from Encrypt or Parse.
type File struct {
	// URL is the content URI the media repository gave the ciphertext,
	// mxc://<server name>/<media id>. Encrypt leaves it empty: the
	// upload fills it in (the outbox writes it into the event).
	URL string

	key    [keySize]byte
	iv     [ivSize]byte
	sha256 [hashSize]byte
}

// Encrypt encrypts plaintext under a fresh key and counter block and
// returns the ciphertext to upload and the file object describing it, with
// an empty URL.
func Encrypt(plaintext []byte) (ciphertext []byte, f *File) {
	f = &File{}
	// crypto/rand.Read never fails: it ends the program instead.
	rand.Read(f.key[:])
	// v2: random high half, zero counter half.
	rand.Read(f.iv[:8])
	ciphertext = make([]byte, len(plaintext))
	f.xor(ciphertext, plaintext)
	f.sha256 = sha256.Sum256(ciphertext)
	return ciphertext, f
}

// Decrypt checks ciphertext against the file object's hash and returns the
// plaintext. The hash is checked before anything is decrypted; a mismatch
// is ErrHashMismatch.
func (f *File) Decrypt(ciphertext []byte) ([]byte, error) {
	sum := sha256.Sum256(ciphertext)
	if subtle.ConstantTimeCompare(sum[:], f.sha256[:]) != 1 {
		return nil, ErrHashMismatch
	}
	// AES-CTR implementations differ once the 64-bit counter half
	// overflows (WebCrypto with a 64-bit counter wraps within it, Go
	// carries into the nonce half), so a counter that would overflow is
	// refused rather than decrypted one way. Encrypt starts it at zero.
	counter := binary.BigEndian.Uint64(f.iv[8:])
	blocks := (uint64(len(ciphertext)) + blockSize - 1) / blockSize
	if blocks > 0 && counter > ^uint64(0)-(blocks-1) {
		return nil, formatErr("iv", "its counter half would overflow within %d bytes", len(ciphertext))
	}
	plaintext := make([]byte, len(ciphertext))
	f.xor(plaintext, ciphertext)
	return plaintext, nil
}

func (f *File) xor(dst, src []byte) {
	block, err := aes.NewCipher(f.key[:])
	if err != nil {
		panic("attachment: AES-256 with a 32-byte key: " + err.Error())
	}
	cipher.NewCTR(block, f.iv[:]).XORKeyStream(dst, src)
}

// SHA256 returns the hash of the ciphertext the file object names. It
// identifies the payload without revealing the key.
func (f *File) SHA256() [hashSize]byte { return f.sha256 }

// String describes the file without its key.
func (f File) String() string {
	url := f.URL
	if url == "" {
		url = "(not uploaded)"
	}
	return fmt.Sprintf("%s sha256:%s", url, base64.RawStdEncoding.EncodeToString(f.sha256[:]))
}

// GoString keeps %#v from printing the key.
func (f File) GoString() string { return "attachment.File{" + f.String() + "}" }

// wireFile and wireKey are the JSON shape of a file object, for
// MarshalJSON only: Parse reads objects member by member (see parse.go).
type wireFile struct {
	URL    string            `json:"url"`
	Key    wireKey           `json:"key"`
	IV     string            `json:"iv"`
	Hashes map[string]string `json:"hashes"`
	V      string            `json:"v"`
}

type wireKey struct {
	Kty    string   `json:"kty"`
	KeyOps []string `json:"key_ops"`
	Alg    string   `json:"alg"`
	K      string   `json:"k"`
	Ext    bool     `json:"ext"`
}

// MarshalJSON encodes the file object as the spec spells it, key
// included.
func (f File) MarshalJSON() ([]byte, error) {
	return json.Marshal(wireFile{
		URL: f.URL,
		Key: wireKey{Kty: "oct", KeyOps: []string{"encrypt", "decrypt"}, Alg: Algorithm,
			K: base64.RawURLEncoding.EncodeToString(f.key[:]), Ext: true},
		IV:     base64.RawStdEncoding.EncodeToString(f.iv[:]),
		Hashes: map[string]string{"sha256": base64.RawStdEncoding.EncodeToString(f.sha256[:])},
		V:      Version,
	})
}

// UnmarshalJSON parses a file object with every check of Parse.
func (f *File) UnmarshalJSON(data []byte) error {
	parsed, err := Parse(data)
	if err != nil {
		return err
	}
	*f = *parsed
	return nil
}
