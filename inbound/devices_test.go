package inbound

import (
	"bytes"
	"testing"
)

// TestKeyCountsEqual: Equal holds exactly when the payloads are the same
// bytes, which is what the intake's filter compared before.
func TestKeyCountsEqual(t *testing.T) {
	base := KeyCounts{UserID: "@a:hs", DeviceID: "D", OneTimeKeys: map[string]int{"mls": 5, "x": 1},
		UnusedFallback: []string{"mls", "x"}, HasFallback: true}
	with := func(change func(*KeyCounts)) KeyCounts {
		k := base
		k.OneTimeKeys = map[string]int{"mls": 5, "x": 1}
		k.UnusedFallback = []string{"mls", "x"}
		change(&k)
		return k
	}
	for _, tc := range []struct {
		name string
		a, b KeyCounts
	}{
		{"same values, other maps", base, with(func(*KeyCounts) {})},
		{"another user", base, with(func(k *KeyCounts) { k.UserID = "@b:hs" })},
		{"another device", base, with(func(k *KeyCounts) { k.DeviceID = "E" })},
		{"a count", base, with(func(k *KeyCounts) { k.OneTimeKeys["mls"] = 4 })},
		{"an algorithm more", base, with(func(k *KeyCounts) { k.OneTimeKeys["y"] = 0 })},
		{"no counts", base, with(func(k *KeyCounts) { k.OneTimeKeys = nil })},
		{"fallback types in another order", base, with(func(k *KeyCounts) { k.UnusedFallback = []string{"x", "mls"} })},
		{"no fallback", base, with(func(k *KeyCounts) { k.HasFallback = false })},
		{"nil and empty counts", KeyCounts{UserID: "@a:hs", DeviceID: "D"}, KeyCounts{UserID: "@a:hs", DeviceID: "D", OneTimeKeys: map[string]int{}}},
		{"nil and empty fallback", KeyCounts{UserID: "@a:hs", DeviceID: "D", HasFallback: true},
			KeyCounts{UserID: "@a:hs", DeviceID: "D", UnusedFallback: []string{}, HasFallback: true}},
	} {
		want := bytes.Equal(tc.a.Encode(), tc.b.Encode())
		if got := tc.a.Equal(tc.b); got != want {
			t.Errorf("%s: Equal %v, payloads equal %v", tc.name, got, want)
		}
		if got := tc.b.Equal(tc.a); got != want {
			t.Errorf("%s, swapped: Equal %v, payloads equal %v", tc.name, got, want)
		}
	}
}
