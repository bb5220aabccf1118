package attachment_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	mautrixattachment "maunium.net/go/mautrix/crypto/attachment"

	"github.com/mls-appservice/mls-appservice/matrix/attachment"
)

const testURL = "mxc://localhost/AbCdEfGhIjKlMnOpQrStUvWx"

func TestEncryptDecryptRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 4096, 300 << 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			plaintext := make([]byte, n)
			rand.Read(plaintext)
			ciphertext, f := attachment.Encrypt(plaintext)
			if len(ciphertext) != n {
				t.Fatalf("ciphertext of %d bytes, want %d", len(ciphertext), n)
			}
			if n >= 16 && bytes.Equal(ciphertext, plaintext) {
				t.Fatal("ciphertext equals plaintext")
			}
			if f.SHA256() != sha256.Sum256(ciphertext) {
				t.Fatal("file object's hash is not the ciphertext's")
			}
			f.URL = testURL
			wire, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := attachment.Parse(wire)
			if err != nil {
				t.Fatalf("parse our own file object %s: %v", wire, err)
			}
			got, err := parsed.Decrypt(ciphertext)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plaintext) {
				t.Fatal("decrypted bytes differ from the plaintext")
			}
		})
	}
}

// TestWireFormat checks the file object against the spec's spelling: the
// JWK members, unpadded encodings, and a v2 counter block whose low 64
// bits are zero.
func TestWireFormat(t *testing.T) {
	_, f := attachment.Encrypt([]byte("payload"))
	wire, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct {
		URL string `json:"url"`
		Key struct {
			Kty    string   `json:"kty"`
			KeyOps []string `json:"key_ops"`
			Alg    string   `json:"alg"`
			K      string   `json:"k"`
			Ext    bool     `json:"ext"`
		} `json:"key"`
		IV     string            `json:"iv"`
		Hashes map[string]string `json:"hashes"`
		V      string            `json:"v"`
	}
	if err := json.Unmarshal(wire, &obj); err != nil {
		t.Fatal(err)
	}
	if obj.V != "v2" || obj.Key.Kty != "oct" || obj.Key.Alg != "A256CTR" || !obj.Key.Ext ||
		strings.Join(obj.Key.KeyOps, ",") != "encrypt,decrypt" || obj.URL != "" {
		t.Fatalf("file object %s", wire)
	}
	key, err := base64.RawURLEncoding.DecodeString(obj.Key.K)
	if err != nil || len(key) != 32 {
		t.Fatalf("k %q: %d bytes, %v; want 32 bytes of unpadded base64url", obj.Key.K, len(key), err)
	}
	iv, err := base64.RawStdEncoding.DecodeString(obj.IV)
	if err != nil || len(iv) != 16 {
		t.Fatalf("iv %q: %d bytes, %v", obj.IV, len(iv), err)
	}
	if !bytes.Equal(iv[8:], make([]byte, 8)) {
		t.Fatalf("iv %x: the counter half must start at zero (v2)", iv)
	}
	if h, err := base64.RawStdEncoding.DecodeString(obj.Hashes["sha256"]); err != nil || len(h) != 32 {
		t.Fatalf("hashes.sha256 %q: %v", obj.Hashes["sha256"], err)
	}
	for _, s := range []string{obj.Key.K, obj.IV, obj.Hashes["sha256"]} {
		if strings.Contains(s, "=") {
			t.Fatalf("%q is padded", s)
		}
	}
}

// TestNISTVector decrypts NIST SP 800-38A F.5.5 (CTR-AES256) through a
// file object, so that the counter handling is checked against a
// published answer and not only against itself.
func TestNISTVector(t *testing.T) {
	key := mustHex(t, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
	counter := mustHex(t, "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
	plaintext := mustHex(t, "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"+
		"30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710")
	ciphertext := mustHex(t, "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"+
		"2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6")
	f, err := attachment.Parse(fileObject(key, counter, ciphertext, nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Decrypt(ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plaintext) {
		t.Fatalf("decrypted %x, want %x", got, plaintext)
	}
}

// TestInteropWithMautrix exchanges attachments with mautrix-go's
// implementation, which Matrix bridges use, in both directions.
func TestInteropWithMautrix(t *testing.T) {
	plaintext := make([]byte, 100<<10+3)
	rand.Read(plaintext)

	ciphertext, ours := attachment.Encrypt(plaintext)
	ours.URL = testURL
	wire, _ := json.Marshal(ours)
	var theirs mautrixattachment.EncryptedFile
	if err := json.Unmarshal(wire, &theirs); err != nil {
		t.Fatal(err)
	}
	got := bytes.Clone(ciphertext)
	if err := theirs.DecryptInPlace(got); err != nil {
		t.Fatalf("mautrix refuses our attachment: %v", err)
	}
	if !bytes.Equal(got, plaintext) {
		t.Fatal("mautrix decrypts our attachment to other bytes")
	}

	theirFile := mautrixattachment.NewEncryptedFile()
	theirCiphertext := bytes.Clone(plaintext)
	theirFile.EncryptInPlace(theirCiphertext)
	theirWire, _ := json.Marshal(struct {
		URL string `json:"url"`
		*mautrixattachment.EncryptedFile
	}{testURL, theirFile})
	f, err := attachment.Parse(theirWire)
	if err != nil {
		t.Fatalf("we refuse mautrix's file object %s: %v", theirWire, err)
	}
	if got, err := f.Decrypt(theirCiphertext); err != nil || !bytes.Equal(got, plaintext) {
		t.Fatalf("decrypting mautrix's attachment: %v (equal %v)", err, bytes.Equal(got, plaintext))
	}
}

func TestDecryptRefusesOtherBytes(t *testing.T) {
	plaintext := bytes.Repeat([]byte("commit "), 1000)
	ciphertext, f := attachment.Encrypt(plaintext)
	for name, tampered := range map[string][]byte{
		"one bit flipped": func() []byte { b := bytes.Clone(ciphertext); b[len(b)/2] ^= 1; return b }(),
		"truncated":       ciphertext[:len(ciphertext)-1],
		"extended":        append(bytes.Clone(ciphertext), 0),
		"empty":           nil,
		"another upload":  func() []byte { c, _ := attachment.Encrypt(plaintext); return c }(),
	} {
		if _, err := f.Decrypt(tampered); !errors.Is(err, attachment.ErrHashMismatch) {
			t.Errorf("%s: %v, want ErrHashMismatch", name, err)
		}
	}
}

// TestDecryptRefusesCounterOverflow: a counter block whose low half
// would overflow is one that implementations decrypt differently.
func TestDecryptRefusesCounterOverflow(t *testing.T) {
	key := make([]byte, 32)
	counter := mustHex(t, "0000000000000000fffffffffffffffe")
	two := make([]byte, 32)   // two blocks: the counter reaches its maximum, fine
	three := make([]byte, 33) // a third block would overflow it
	for _, tt := range []struct {
		ciphertext []byte
		ok         bool
	}{{two, true}, {three, false}} {
		f, err := attachment.Parse(fileObject(key, counter, tt.ciphertext, nil))
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Decrypt(tt.ciphertext)
		var fe *attachment.FormatError
		if tt.ok != (err == nil) || (!tt.ok && (!errors.As(err, &fe) || fe.Field != "iv")) {
			t.Errorf("%d bytes: %v", len(tt.ciphertext), err)
		}
	}
}

func TestParseRefusesWithTheField(t *testing.T) {
	key, iv, ct := make([]byte, 32), make([]byte, 16), []byte("x")
	valid := string(fileObject(key, iv, ct, nil))
	k := base64.RawURLEncoding.EncodeToString(key)
	sum := sha256.Sum256(ct)
	hash := base64.RawStdEncoding.EncodeToString(sum[:])
	tests := []struct {
		name  string
		json  string
		field string
	}{
		{"not JSON", `{"v":`, ""},
		{"array", `[]`, ""},
		{"string", `"mxc://a/b"`, ""},
		{"null", `null`, ""},
		{"trailing data", valid + `{}`, ""},
		{"too large", `{"pad":"` + strings.Repeat("x", 9000) + `"}`, ""},
		{"v missing", edit(valid, "v", nil), "v"},
		{"v1", edit(valid, "v", "v1"), "v"},
		{"v number", edit(valid, "v", 2), "v"},
		{"url missing", edit(valid, "url", nil), "url"},
		{"url empty", edit(valid, "url", ""), "url"},
		{"url https", edit(valid, "url", "https://localhost/abc"), "url"},
		{"url no media id", edit(valid, "url", "mxc://localhost/"), "url"},
		{"url no slash", edit(valid, "url", "mxc://localhost"), "url"},
		{"url path", edit(valid, "url", "mxc://localhost/a/b"), "url"},
		{"url dot dot", edit(valid, "url", "mxc://localhost/.."), "url"},
		{"url query", edit(valid, "url", "mxc://localhost/abc?x=1"), "url"},
		{"url bad server", edit(valid, "url", "mxc://local_host/abc"), "url"},
		{"url bad port", edit(valid, "url", "mxc://localhost:99999x/abc"), "url"},
		{"url empty port", edit(valid, "url", "mxc://localhost:/abc"), "url"},
		{"url bad ipv6", edit(valid, "url", "mxc://[::1%eth0]/abc"), "url"},
		{"url ipv4 in brackets", edit(valid, "url", "mxc://[127.0.0.1]/abc"), "url"},
		{"key missing", edit(valid, "key", nil), "key"},
		{"key string", edit(valid, "key", "k"), "key"},
		{"kty", editKey(valid, "kty", "RSA"), "key.kty"},
		{"alg", editKey(valid, "alg", "A128CTR"), "key.alg"},
		{"alg missing", editKey(valid, "alg", nil), "key.alg"},
		{"key_ops without decrypt", editKey(valid, "key_ops", []string{"encrypt"}), "key.key_ops"},
		{"key_ops numbers", editKey(valid, "key_ops", []int{1}), "key.key_ops"},
		{"ext false", editKey(valid, "ext", false), "key.ext"},
		{"ext string", editKey(valid, "ext", "true"), "key.ext"},
		{"k missing", editKey(valid, "k", nil), "key.k"},
		{"k short", editKey(valid, "k", k[:42]), "key.k"},
		{"k 16 bytes", editKey(valid, "k", base64.RawURLEncoding.EncodeToString(key[:16])), "key.k"},
		{"k padded", editKey(valid, "k", base64.URLEncoding.EncodeToString(key)), "key.k"},
		{"k standard alphabet", editKey(valid, "k", strings.Repeat("+", 43)), "key.k"},
		{"k non-canonical", editKey(valid, "k", k[:42]+"B"), "key.k"},
		{"k with newline", editKey(valid, "k", k[:21]+"\n"+k[21:42]), "key.k"},
		{"iv missing", edit(valid, "iv", nil), "iv"},
		{"iv 8 bytes", edit(valid, "iv", base64.RawStdEncoding.EncodeToString(iv[:8])), "iv"},
		{"iv padded", edit(valid, "iv", base64.StdEncoding.EncodeToString(iv)), "iv"},
		{"iv url alphabet", edit(valid, "iv", strings.Repeat("_", 22)), "iv"},
		{"hashes missing", edit(valid, "hashes", nil), "hashes"},
		{"hashes array", edit(valid, "hashes", []string{hash}), "hashes"},
		{"sha256 missing", edit(valid, "hashes", map[string]string{"sha512": hash}), "hashes.sha256"},
		{"sha256 short", edit(valid, "hashes", map[string]string{"sha256": hash[:40]}), "hashes.sha256"},
		{"sha256 number", edit(valid, "hashes", map[string]int{"sha256": 1}), "hashes.sha256"},
		{"duplicate url", strings.Replace(valid, `{`, `{"url":"mxc://evil/x",`, 1), "url"},
		{"duplicate sha256", strings.Replace(valid, `"sha256":`, `"sha256":"`+hash+`","sha256":`, 1), "hashes.sha256"},
		{"duplicate k", strings.Replace(valid, `"k":`, `"k":"`+k+`","k":`, 1), "key.k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := attachment.Parse([]byte(tt.json))
			if err == nil {
				t.Fatalf("accepted %s as %v", tt.json, f)
			}
			var fe *attachment.FormatError
			if !errors.As(err, &fe) || !errors.Is(err, attachment.ErrBadFile) {
				t.Fatalf("error %v (%T) is not a FormatError matching ErrBadFile", err, err)
			}
			if fe.Field != tt.field {
				t.Errorf("error %q names field %q, want %q", err, fe.Field, tt.field)
			}
			if strings.Contains(err.Error(), k) {
				t.Errorf("error %q shows the key", err)
			}
		})
	}
}

// TestParseNamesAreExact: member names are compared exactly (encoding/json
// structs would take "IV" for "iv"), so "IV" is just an unknown member.
func TestParseNamesAreExact(t *testing.T) {
	iv := base64.RawStdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16))
	doc := edit(string(fileObject(make([]byte, 32), make([]byte, 16), nil, nil)), "IV", iv)
	f, err := attachment.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := json.Marshal(f)
	if strings.Contains(string(wire), iv) {
		t.Fatalf("%s: the IV member was read as iv", wire)
	}
	if _, err := attachment.Parse([]byte(edit(doc, "iv", nil))); err == nil {
		t.Fatal("IV was accepted for a missing iv")
	}
}

func TestParseAcceptsServerNameForms(t *testing.T) {
	for _, url := range []string{
		"mxc://localhost/abc", "mxc://localhost:8448/abc", "mxc://matrix.example.org/A-b_9",
		"mxc://1.2.3.4/abc", "mxc://[::1]/abc", "mxc://[2001:db8::1]:8448/abc",
		"mxc://h/" + strings.Repeat("a", 255),
	} {
		if _, err := attachment.Parse([]byte(edit(string(fileObject(make([]byte, 32), make([]byte, 16), nil, nil)), "url", url))); err != nil {
			t.Errorf("%s: %v", url, err)
		}
	}
	if _, _, err := attachment.ParseContentURI("mxc://h/" + strings.Repeat("a", 256)); err == nil {
		t.Error("a media id of 256 characters was accepted")
	}
}

func TestStringHidesTheKey(t *testing.T) {
	_, f := attachment.Encrypt([]byte("secret payload"))
	f.URL = testURL
	wire, _ := json.Marshal(f)
	var obj struct {
		Key struct {
			K string `json:"k"`
		} `json:"key"`
	}
	if err := json.Unmarshal(wire, &obj); err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(obj.Key.K)
	for _, s := range []string{fmt.Sprint(f), fmt.Sprintf("%v", *f), fmt.Sprintf("%+v", *f), fmt.Sprintf("%#v", f), fmt.Sprintf("%#v", *f), f.String()} {
		if strings.Contains(s, obj.Key.K) || strings.Contains(s, hex.EncodeToString(raw)) || strings.Contains(s, fmt.Sprint(raw)) {
			t.Errorf("%q shows the key", s)
		}
		if !strings.Contains(s, testURL) {
			t.Errorf("%q does not name the URL", s)
		}
	}
}

func TestUnmarshalJSONChecks(t *testing.T) {
	var content struct {
		File attachment.File `json:"ciphertext_file"`
	}
	if err := json.Unmarshal([]byte(`{"ciphertext_file": {"v": "v1"}}`), &content); !errors.Is(err, attachment.ErrBadFile) {
		t.Fatalf("unmarshal of a v1 file object: %v", err)
	}
	_, f := attachment.Encrypt([]byte("x"))
	f.URL = testURL
	wire, _ := json.Marshal(map[string]any{"ciphertext_file": f})
	if err := json.Unmarshal(wire, &content); err != nil || content.File.SHA256() != f.SHA256() || content.File.URL != testURL {
		t.Fatalf("unmarshal of %s: %v", wire, err)
	}
}

// fileObject writes a file object by hand, so that tests control every
// byte; extra members are added to it.
func fileObject(key, iv, ciphertext []byte, extra map[string]any) []byte {
	sum := sha256.Sum256(ciphertext)
	obj := map[string]any{
		"url": testURL,
		"key": map[string]any{"kty": "oct", "key_ops": []string{"encrypt", "decrypt"}, "alg": "A256CTR",
			"k": base64.RawURLEncoding.EncodeToString(key), "ext": true},
		"iv":     base64.RawStdEncoding.EncodeToString(iv),
		"hashes": map[string]string{"sha256": base64.RawStdEncoding.EncodeToString(sum[:])},
		"v":      "v2",
	}
	for k, v := range extra {
		obj[k] = v
	}
	out, err := json.Marshal(obj)
	if err != nil {
		panic(err)
	}
	return out
}

// edit returns the JSON object doc with member name set to value, or
// removed if value is nil.
func edit(doc, name string, value any) string {
	var obj map[string]any
	if err := json.Unmarshal([]byte(doc), &obj); err != nil {
		panic(err)
	}
	if value == nil {
		delete(obj, name)
	} else {
		obj[name] = value
	}
	out, _ := json.Marshal(obj)
	return string(out)
}

// editKey is edit inside the key object.
func editKey(doc, name string, value any) string {
	var obj map[string]any
	if err := json.Unmarshal([]byte(doc), &obj); err != nil {
		panic(err)
	}
	key, _ := json.Marshal(obj["key"])
	var edited map[string]any
	_ = json.Unmarshal([]byte(edit(string(key), name, value)), &edited)
	obj["key"] = edited
	out, _ := json.Marshal(obj)
	return string(out)
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
