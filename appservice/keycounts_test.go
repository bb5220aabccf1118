package appservice

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

// The hand scanners give what json.Unmarshal into the same types gives,
// and take every input it takes, on valid UTF-8 JSON (what
// ParseTransaction hands them).
func FuzzDecodeKeyCounts(f *testing.F) {
	for _, s := range []string{
		`{"@a:hs": {"D": {"k": 1, "k2": -0}, "E": {}}, "@b:hs": null}`,
		`{"@a:hs": {"D": ["k", null, "\u00e9\n"], "E": [], "F": null}}`,
		`{"@a:hs": {"D": {"k": 1}, "D": {"j": 2}}, "@a:hs": {}}`,
		` null `, `{}`, `{"@a:hs": {"D": {"k": 1.0}}}`, `{"@a:hs": {"D": {"k": 1e2}}}`,
		`{"@a:hs": {"D": {"k": 9223372036854775808}}}`, `{"@a:hs": {"D": {"k": "1"}}}`, `[]`,
		`{"@a:hs": {"D": {"k": null}}}`, `{"\"@a\\":hs": {"D\u0000": {"k\/": 1}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !utf8.Valid(raw) || !json.Valid(raw) {
			return
		}
		var wantCounts map[string]map[string]map[string]int64
		wantErr := json.Unmarshal(raw, &wantCounts)
		counts, ok := decodeOTKCounts(raw)
		if ok != (wantErr == nil) || ok && !reflect.DeepEqual(counts, wantCounts) {
			t.Fatalf("counts of %q: %v %v, json.Unmarshal %v %v", raw, counts, ok, wantCounts, wantErr)
		}
		var wantTypes map[string]map[string][]string
		wantErr = json.Unmarshal(raw, &wantTypes)
		types, ok := decodeFallbackTypes(raw)
		if ok != (wantErr == nil) || ok && !reflect.DeepEqual(types, wantTypes) {
			t.Fatalf("fallback types of %q: %v %v, json.Unmarshal %v %v", raw, types, ok, wantTypes, wantErr)
		}
	})
}
