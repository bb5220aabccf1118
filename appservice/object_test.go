package appservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkSplit holds splitObject to encoding/json on body: it accepts
// exactly what json.Valid accepts, tells an object from other JSON, and
// gives each key the value json.Unmarshal into a map gives (the last of
// a repeated key).
func checkSplit(t *testing.T, body []byte) {
	t.Helper()
	members, err := splitObject(body)
	valid := json.Valid(body)
	var byKey map[string]json.RawMessage
	isObject := valid && json.Unmarshal(body, &byKey) == nil && byKey != nil
	switch {
	case !valid:
		if !errors.Is(err, errNotJSON) {
			t.Fatalf("%q: json.Valid refuses it, splitObject gives %v", body, err)
		}
		return
	case !isObject:
		if !errors.Is(err, errNotObject) {
			t.Fatalf("%q: valid JSON, not an object; splitObject gives %v", body, err)
		}
		return
	case err != nil:
		t.Fatalf("%q: a valid object; splitObject gives %v", body, err)
	}
	if !utf8.Valid(body) {
		return // json.Unmarshal's keys replace invalid bytes; ours keep them
	}
	got := map[string][]byte{}
	for _, m := range members {
		got[m.key] = m.value
	}
	if len(got) != len(byKey) {
		t.Fatalf("%q: %d keys, json.Unmarshal finds %d", body, len(got), len(byKey))
	}
	for k, v := range byKey {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("%q: key %q is %q, json.Unmarshal gives %q", body, k, got[k], v)
		}
	}
}

func TestSplitObject(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, body := range []string{
		`{}`, ` { } `, `{"a":1}`, `{"a": {"b": [1, 2.5e-3, -0, "x", true, false, null]}, "c": "d"}`,
		`{"a": 1, "a": 2}`, `{"\u0061": "\"\\\/\b\f\n\r\t\u00e9"}`, `{"a": []}`, `{"a": {}}`, `{"a": [{}, [], [[]]]}`,
		`[]`, `null`, `1`, `"s"`, `true`, ` [1, {"a": 2}] `,
		``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1 "b":2}`, `{"a":1}}`, `{"a":1} x`, `{} {}`,
		`{"a": 01}`, `{"a": 1.}`, `{"a": .5}`, `{"a": -}`, `{"a": 1e}`, `{"a": 1e+}`, `{"a": +1}`, `{"a": 0x1}`,
		`{"a": tru}`, `{"a": nul}`, `{"a": True}`, `{"a": "\x"}`, `{"a": "\u12"}`, `{"a": "\u12G4"}`, "{\"a\": \"\x01\"}",
		`{"a": "unterminated}`, `{1: 2}`, `{"a": [1 2]}`, `{"a": [1,]}`, `{"a": {"b"}}`, `{"a": {"b": 1,}}`, `{"a": [}`,
		"{\"a\": \"\xff\xfe\"}", "{\"\xff\": 1}", "\xef\xbb\xbf{}",
		`{"a": ` + deep(9999) + `}`, `{"a": ` + deep(10000) + `}`, deep(10000), deep(10001),
	} {
		checkSplit(t, []byte(body))
	}
}

// FuzzSplitObject: splitObject agrees with encoding/json on any input.
func FuzzSplitObject(f *testing.F) {
	for _, seed := range []string{`{}`, `{"a": [1, {"b": "c\u00e9"}], "a": null}`, `[1e5]`, `{"events": [], "x": -0.5E+2}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkSplit(t, body) })
}
