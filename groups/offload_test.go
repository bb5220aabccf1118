package groups

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mls-appservice/mls-appservice/matrix/attachment"
)

// offloadedCommit returns the content of a commit event whose MLSMessage
// is in the media repository, and the file object's plaintext.
func offloadedCommit(t testing.TB) (content []byte, payload []byte) {
	payload = bytes.Repeat([]byte("commit"), 100)
	_, file := attachment.Encrypt(payload)
	file.URL = "mxc://example.org/abcDEF_123"
	raw, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	epoch := b64(bytes.Repeat([]byte{1}, 32))
	next := b64(bytes.Repeat([]byte{2}, 32))
	content = []byte(`{"algorithm":"org.matrix.msc2883.v1.dmls.dhkemx25519-aes128gcm-sha256-ed25519",` +
		`"ciphertext_file":` + string(raw) + `,"epoch_creator":["@a:example.org","DEV"],"commit_event":"$base",` +
		`"dmls_epoch":"` + epoch + `","sender":["@a:example.org","DEV"],"dmls_next_epoch":"` + next + `",` +
		`"dmls_next_epoch_number":2}`)
	return content, payload
}

func offloadedWelcome(t testing.TB) []byte {
	_, file := attachment.Encrypt([]byte("welcome"))
	file.URL = "mxc://example.org/w"
	raw, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	id := b64(bytes.Repeat([]byte{3}, 32))
	return []byte(`{"algorithm":"org.matrix.msc2883.v1.dmls.welcome.dhkemx25519-aes128gcm-sha256-ed25519",` +
		`"ciphertext_file":` + string(raw) + `,"room_id":"!r:example.org","sender":["@a:example.org","DEV"],` +
		`"resolves":[],"commit_event":"$c","dmls_base_epoch":"` + id + `","dmls_epoch":"` + id + `",` +
		`"dmls_epoch_number":2,"dmls_resolves":[]}`)
}

func TestParseOffloaded(t *testing.T) {
	content, _ := offloadedCommit(t)
	e, err := ParseEncrypted(content)
	if err != nil {
		t.Fatal(err)
	}
	if e.File == nil || e.Ciphertext != nil || e.Commit == nil || e.File.URL != "mxc://example.org/abcDEF_123" {
		t.Fatalf("parsed %+v", e)
	}
	wel, err := ParseWelcome(offloadedWelcome(t))
	if err != nil {
		t.Fatal(err)
	}
	if wel.File == nil || wel.Message != nil {
		t.Fatalf("parsed %+v", wel)
	}
	for name, c := range map[string]string{
		"both":        strings.Replace(string(content), `"ciphertext_file"`, `"ciphertext":"AAAA","ciphertext_file"`, 1),
		"null":        strings.Replace(string(content), `"ciphertext_file":{`, `"ciphertext_file":null,"x":{`, 1),
		"http url":    strings.Replace(string(content), `mxc://example.org/abcDEF_123`, `https://example.org/a`, 1),
		"bad version": strings.Replace(string(content), `"v":"v2"`, `"v":"v1"`, 1),
		"message":     strings.Replace(string(content), `,"sender":["@a:example.org","DEV"],"dmls_next_epoch":"`+b64(bytes.Repeat([]byte{2}, 32))+`","dmls_next_epoch_number":2`, ``, 1),
	} {
		if c == string(content) {
			t.Fatalf("%s: the case did not change the content", name)
		}
		if _, err := ParseEncrypted([]byte(c)); !errors.Is(err, ErrWire) {
			t.Errorf("%s: got %v, want ErrWire", name, err)
		}
	}
}

// FuzzParseOffloaded: the parsers of commit events and Welcomes never
// panic, refuse only with ErrWire, and what they accept carries exactly
// one of an inline payload and a file object that encodes back to itself.
func FuzzParseOffloaded(f *testing.F) {
	content, _ := offloadedCommit(f)
	f.Add(content)
	f.Add(offloadedWelcome(f))
	f.Add([]byte(`{"algorithm":"org.matrix.msc2883.v1.dmls.x","ciphertext":"AAAA","ciphertext_file":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(ct []byte, file *attachment.File, err error) {
			if err != nil {
				if !errors.Is(err, ErrWire) {
					t.Fatalf("refusal %v is not ErrWire", err)
				}
				return
			}
			if (ct == nil) == (file == nil) {
				t.Fatalf("%s: inline %v and file %v", data, ct != nil, file != nil)
			}
			if file != nil {
				wire, err := json.Marshal(file)
				if err != nil {
					t.Fatal(err)
				}
				again, err := attachment.Parse(wire)
				if err != nil || *again != *file {
					t.Fatalf("file object %s does not round-trip: %v", wire, err)
				}
			}
		}
		e, err := ParseEncrypted(data)
		if err == nil {
			check(e.Ciphertext, e.File, nil)
		} else {
			check(nil, nil, err)
		}
		w, err := ParseWelcome(data)
		if err == nil {
			check(w.Message, w.File, nil)
		} else {
			check(nil, nil, err)
		}
	})
}
