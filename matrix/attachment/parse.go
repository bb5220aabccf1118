package attachment

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"slices"
	"strings"
)

// MaxFileObjectSize bounds the JSON of a file object that Parse reads. A
// real one is about 400 bytes; an event is at most 64 KiB anyway.
const MaxFileObjectSize = 8 << 10

// Parse parses and checks a file object received from another device
// (the value of an event's ciphertext_file). See the package doc for what
// is checked; every refusal is a *FormatError.
func Parse(data []byte) (*File, error) {
	if len(data) > MaxFileObjectSize {
		return nil, formatErr("", "%d bytes, more than the %d a file object may have", len(data), MaxFileObjectSize)
	}
	obj, err := readObject(data, "")
	if err != nil {
		return nil, err
	}
	var f File
	v, err := stringMember(obj, "", "v")
	if err != nil {
		return nil, err
	}
	if v != Version {
		return nil, formatErr("v", "version %q is not supported, only %q", truncate(v), Version)
	}
	if f.URL, err = stringMember(obj, "", "url"); err != nil {
		return nil, err
	}
	if _, _, err := ParseContentURI(f.URL); err != nil {
		return nil, err
	}
	if err := parseKey(obj, &f); err != nil {
		return nil, err
	}
	if err := decodeMember(obj, "", "iv", base64.RawStdEncoding, f.iv[:]); err != nil {
		return nil, err
	}
	raw, ok := obj["hashes"]
	if !ok {
		return nil, formatErr("hashes", "missing")
	}
	hashes, err := readObject(raw, "hashes")
	if err != nil {
		return nil, err
	}
	if err := decodeMember(hashes, "hashes", "sha256", base64.RawStdEncoding, f.sha256[:]); err != nil {
		return nil, err
	}
	return &f, nil
}

func parseKey(obj map[string]json.RawMessage, f *File) error {
	raw, ok := obj["key"]
	if !ok {
		return formatErr("key", "missing")
	}
	key, err := readObject(raw, "key")
	if err != nil {
		return err
	}
	for _, want := range []struct{ name, value string }{{"kty", "oct"}, {"alg", Algorithm}} {
		got, err := stringMember(key, "key", want.name)
		if err != nil {
			return err
		}
		if got != want.value {
			return formatErr("key."+want.name, "must be %q, got %q", want.value, truncate(got))
		}
	}
	rawOps, ok := key["key_ops"]
	if !ok {
		return formatErr("key.key_ops", "missing")
	}
	var ops []string
	if err := json.Unmarshal(rawOps, &ops); err != nil {
		return formatErr("key.key_ops", "must be an array of strings")
	}
	if !slices.Contains(ops, "encrypt") || !slices.Contains(ops, "decrypt") {
		return formatErr("key.key_ops", "must contain \"encrypt\" and \"decrypt\"")
	}
	rawExt, ok := key["ext"]
	if !ok {
		return formatErr("key.ext", "missing")
	}
	var ext bool
	if err := json.Unmarshal(rawExt, &ext); err != nil || !ext {
		return formatErr("key.ext", "must be true")
	}
	return decodeMember(key, "key", "k", base64.RawURLEncoding, f.key[:])
}

// readObject decodes one JSON object into its members, refusing
// duplicate names and anything after the object. Member names are
// compared exactly, unlike encoding/json's struct decoding, which also
// matches other cases ("URL" for "url").
func readObject(data []byte, field string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	notObject := formatErr(field, "must be a JSON object")
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, notObject
	}
	obj := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		name, isName := tok.(string)
		if err != nil || !isName {
			return nil, notObject
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, notObject
		}
		if _, dup := obj[name]; dup {
			return nil, formatErr(join(field, name), "appears twice")
		}
		obj[name] = value
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, notObject
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, formatErr(field, "has data after the object")
	}
	return obj, nil
}

func stringMember(obj map[string]json.RawMessage, parent, name string) (string, error) {
	raw, ok := obj[name]
	if !ok {
		return "", formatErr(join(parent, name), "missing")
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", formatErr(join(parent, name), "must be a string")
	}
	return s, nil
}

// decodeMember decodes the unpadded base64 string member name into dst,
// which it must fill exactly. Strict decoding refuses non-zero padding
// bits, and the length check refuses the line breaks the decoder would
// skip, so each value has one spelling.
func decodeMember(obj map[string]json.RawMessage, parent, name string, enc *base64.Encoding, dst []byte) error {
	s, err := stringMember(obj, parent, name)
	if err != nil {
		return err
	}
	field := join(parent, name)
	alphabet := "base64"
	if enc == base64.RawURLEncoding {
		alphabet = "base64url"
	}
	if len(s) != enc.EncodedLen(len(dst)) {
		return formatErr(field, "must be %d bytes in unpadded %s (%d characters), got %d characters",
			len(dst), alphabet, enc.EncodedLen(len(dst)), len(s))
	}
	if n, err := enc.Strict().Decode(dst, []byte(s)); err != nil || n != len(dst) {
		return formatErr(field, "is not canonical unpadded %s", alphabet)
	}
	return nil
}

// ParseContentURI splits mxc://<server name>/<media id> into its parts,
// checking the server name's grammar (hostname or IP literal, optional
// port) and that the media id uses only the characters the spec allows
// (A-Z, a-z, 0-9, "_" and "-").
func ParseContentURI(uri string) (serverName, mediaID string, err error) {
	rest, ok := strings.CutPrefix(uri, "mxc://")
	if !ok {
		return "", "", formatErr("url", "must be an mxc:// content URI, got %q", truncate(uri))
	}
	serverName, mediaID, ok = strings.Cut(rest, "/")
	if !ok || !validServerName(serverName) {
		return "", "", formatErr("url", "has no valid server name: %q", truncate(uri))
	}
	if !validMediaID(mediaID) {
		return "", "", formatErr("url", "has no valid media id (1 to 255 of A-Z a-z 0-9 _ -): %q", truncate(uri))
	}
	return serverName, mediaID, nil
}

func validServerName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	host := s
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		port := s[i+1:]
		if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return false
		}
		host = s[:i]
	}
	if inner, ok := strings.CutPrefix(host, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		addr, err := netip.ParseAddr(inner)
		return ok && err == nil && addr.Is6() && addr.Zone() == ""
	}
	return host != "" && strings.Trim(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") == ""
}

func validMediaID(s string) bool {
	return s != "" && len(s) <= 255 &&
		strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// truncate keeps quoted foreign values in errors short.
func truncate(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
