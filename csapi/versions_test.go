package csapi

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestWithoutRefusedFeatures(t *testing.T) {
	for _, c := range []struct {
		name, in string
		ok       bool
		want     map[string]bool // unstable_features after, if ok
	}{
		{"sliding sync off", `{"versions":["v1.11"],"unstable_features":{"org.matrix.simplified_msc3575":true,"org.matrix.msc3575":true,"org.matrix.msc4186":true,"org.matrix.msc3882":true}}`,
			true, map[string]bool{"org.matrix.simplified_msc3575": false, "org.matrix.msc3575": false, "org.matrix.msc4186": false, "org.matrix.msc3882": true}},
		{"already off", `{"versions":["v1.11"],"unstable_features":{"org.matrix.msc3575":false}}`, true, map[string]bool{"org.matrix.msc3575": false}},
		{"no features", `{"versions":["v1.11"]}`, true, nil},
		{"not JSON", `<html>`, false, nil},
		{"features not a map", `{"versions":[],"unstable_features":[1]}`, false, nil},
		{"null", `null`, false, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, ok := withoutRefusedFeatures([]byte(c.in))
			if ok != c.ok {
				t.Fatalf("ok = %v, want %v", ok, c.ok)
			}
			if !ok {
				return
			}
			var doc struct {
				Versions []string        `json:"versions"`
				Features map[string]bool `json:"unstable_features"`
			}
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatal(err)
			}
			if len(doc.Versions) == 0 {
				t.Error("versions lost")
			}
			if len(doc.Features) != len(c.want) {
				t.Fatalf("features %v, want %v", doc.Features, c.want)
			}
			for k, v := range c.want {
				if doc.Features[k] != v {
					t.Errorf("%s = %v, want %v", k, doc.Features[k], v)
				}
			}
		})
	}
}

// FuzzWithoutRefusedFeatures: any answer of the homeserver is either
// refused (relayed as it came) or rewritten into valid JSON with no
// refused feature left on.
func FuzzWithoutRefusedFeatures(f *testing.F) {
	f.Add([]byte(`{"versions":["v1.11"],"unstable_features":{"org.matrix.simplified_msc3575":true}}`))
	f.Add([]byte(`{"unstable_features":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		out, ok := withoutRefusedFeatures(body)
		if !ok {
			return
		}
		var doc struct {
			Features map[string]bool `json:"unstable_features"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("rewritten answer is not JSON: %v", err)
		}
		for name, on := range doc.Features {
			for _, f := range refusedFeatures {
				if on && strings.Contains(strings.ToLower(name), f) {
					t.Fatalf("%s still on", name)
				}
			}
		}
	})
}
