package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Canonical JSON (Matrix appendix "Canonical JSON") is what signed JSON
// signs. A received object is decoded once into a generic value and both
// its canonical form (to verify) and its fields (to use) come from that
// one value, so that an object with duplicate keys or odd encodings cannot
// show the verifier one content and the reader another.

// maxDepth bounds nesting of received JSON.
const maxDepth = 16

var errNotCanonical = errors.New("not representable as canonical JSON")

// decodeValue decodes JSON into a generic value with exact numbers.
func decodeValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after JSON value")
	}
	return v, nil
}

// canonical encodes v, a value from decodeValue or built of maps, slices,
// strings, bools, integers and nil, in canonical JSON.
func canonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := writeCanonical(&buf, v, 0); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeCanonical(buf *bytes.Buffer, v any, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested deeper than %d", errNotCanonical, maxDepth)
	}
	switch x := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case string:
		return writeString(buf, x)
	case json.Number:
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil || n < -(1<<53)+1 || n > (1<<53)-1 {
			return fmt.Errorf("%w: number %.20s", errNotCanonical, x)
		}
		buf.WriteString(strconv.FormatInt(n, 10))
	case int:
		return writeCanonical(buf, json.Number(strconv.Itoa(x)), depth)
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, e, depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case []string:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeString(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case map[string]any:
		// Canonical JSON sorts keys by code point; Go strings compare by
		// UTF-8 bytes, which orders the same way.
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeString(buf, k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := writeCanonical(buf, x[k], depth+1); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return writeCanonical(buf, m, depth)
	default:
		return fmt.Errorf("%w: %T", errNotCanonical, v)
	}
	return nil
}

// writeString escapes only what JSON requires, with the short escapes
// where they exist, and writes everything else as UTF-8.
func writeString(buf *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: invalid UTF-8", errNotCanonical)
	}
	buf.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			buf.WriteString(`\"`)
		case r == '\\':
			buf.WriteString(`\\`)
		case r == '\b':
			buf.WriteString(`\b`)
		case r == '\f':
			buf.WriteString(`\f`)
		case r == '\n':
			buf.WriteString(`\n`)
		case r == '\r':
			buf.WriteString(`\r`)
		case r == '\t':
			buf.WriteString(`\t`)
		case r < 0x20:
			fmt.Fprintf(buf, `\u%04x`, r)
		default:
			buf.WriteRune(r)
		}
	}
	buf.WriteByte('"')
	return nil
}

// signedContent returns the canonical JSON that a signature on obj signs:
// obj without its signatures and unsigned members.
func signedContent(obj map[string]any) ([]byte, error) {
	stripped := make(map[string]any, len(obj))
	for k, v := range obj {
		if k != "signatures" && k != "unsigned" {
			stripped[k] = v
		}
	}
	return canonical(stripped)
}
