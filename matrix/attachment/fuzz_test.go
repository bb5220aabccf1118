package attachment_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/matrix/attachment"
)

// FuzzParse: Parse never panics, refuses only with a FormatError, and
// what it accepts encodes back to a file object that parses to the same
// value (one spelling per file object).
func FuzzParse(f *testing.F) {
	key, iv := make([]byte, 32), make([]byte, 16)
	f.Add(fileObject(key, iv, []byte("x"), nil))
	f.Add(fileObject(key, iv, nil, map[string]any{"mimetype": "application/octet-stream"}))
	f.Add([]byte(`{"v":"v2","url":"mxc://[::1]:8448/a","key":{},"iv":"","hashes":{}}`))
	f.Add([]byte(`{"v":"v2","v":"v2"}`))
	f.Add([]byte(`[{"v":"v2"}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := attachment.Parse(data)
		if err != nil {
			if !errors.Is(err, attachment.ErrBadFile) {
				t.Fatalf("refusal %v is not ErrBadFile", err)
			}
			return
		}
		wire, err := json.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		again, err := attachment.Parse(wire)
		if err != nil {
			t.Fatalf("our encoding %s of an accepted file object is refused: %v", wire, err)
		}
		if *again != *file {
			t.Fatalf("%s parses to %v, then to %v", data, file, again)
		}
		rewire, _ := json.Marshal(again)
		if !bytes.Equal(rewire, wire) {
			t.Fatalf("encoding is not stable: %s, then %s", wire, rewire)
		}
	})
}

// FuzzDecrypt: whatever the file object and bytes, Decrypt never panics,
// returns plaintext only for the bytes the hash names, and returns as
// many bytes as it was given.
func FuzzDecrypt(f *testing.F) {
	ciphertext, file := attachment.Encrypt([]byte("a commit too large for an event"))
	file.URL = testURL
	wire, _ := json.Marshal(file)
	f.Add(wire, ciphertext)
	f.Add(wire, ciphertext[1:])
	f.Add(fileObject(make([]byte, 32), bytes.Repeat([]byte{0xff}, 16), []byte("0123456789abcdefX"), nil), []byte("0123456789abcdefX"))
	f.Fuzz(func(t *testing.T, object, data []byte) {
		file, err := attachment.Parse(object)
		if err != nil {
			return
		}
		plaintext, err := file.Decrypt(data)
		if err != nil {
			if !errors.Is(err, attachment.ErrHashMismatch) && !errors.Is(err, attachment.ErrBadFile) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if sha256.Sum256(data) != file.SHA256() {
			t.Fatal("decrypted bytes whose hash is not the file object's")
		}
		if len(plaintext) != len(data) {
			t.Fatalf("%d bytes of plaintext from %d of ciphertext", len(plaintext), len(data))
		}
	})
}

// FuzzRoundTrip: every payload comes back from Encrypt and Decrypt.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("welcome"))
	f.Fuzz(func(t *testing.T, plaintext []byte) {
		ciphertext, file := attachment.Encrypt(plaintext)
		got, err := file.Decrypt(ciphertext)
		if err != nil || !bytes.Equal(got, plaintext) {
			t.Fatalf("round trip of %d bytes: %v", len(plaintext), err)
		}
	})
}
