package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// FuzzClaimAnswers feeds arbitrary /keys/query and /keys/claim answers to
// the parsers and checks of Claim: they must never panic, and anything
// they accept must pass the checks that matter (the credential names the
// device, the leaf key is the published one).
func FuzzClaimAnswers(f *testing.F) {
	s, _ := suite.Lookup(1)
	a := newTestDevice(f, s, "@a:hs", "A")
	kp := keyPackageValue(f, a.dev.Credential(), a.sig, nil, nil)
	query, _ := json.Marshal(map[string]any{"device_keys": map[string]any{"@a:hs": map[string]any{"A": json.RawMessage(a.keys)}}})
	claim, _ := json.Marshal(map[string]any{"one_time_keys": map[string]any{"@a:hs": map[string]any{"A": map[string]any{
		KeyPackageAlgorithm(1) + ":k": kp}}}})
	f.Add(query, claim)
	f.Add([]byte(`{}`), []byte(`{}`))
	f.Add([]byte(`{"device_keys":{"@a:hs":{"A":{"keys":[1],"signatures":null}}}}`), []byte(`{"one_time_keys":{"@a:hs":{"A":{"x":1}}}}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`), []byte(`{"a":1e400}`))
	now := time.Now()
	f.Fuzz(func(t *testing.T, queryRaw, claimRaw []byte) {
		q, err := parseQuery(queryRaw)
		if err != nil {
			return
		}
		p, err := verifyDeviceKeys(a.dev, s, q.devices[a.dev])
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) {
				t.Fatalf("not a refusal: %v", err)
			}
			return
		}
		_ = q.crossSigned(a.dev.UserID, p)
		keys, err := parseClaim(claimRaw)
		if err != nil {
			return
		}
		for _, v := range keys[a.dev] {
			value, ok := v.(string)
			if !ok {
				continue
			}
			got, err := verifyKeyPackage(s, a.dev, p.CredentialKey, value, now)
			if err != nil {
				continue
			}
			if string(got.LeafNode.Credential.Identity) != a.dev.String() || string(got.LeafNode.SignatureKey) != string(p.CredentialKey) {
				t.Fatal("accepted a key package that does not belong to the device")
			}
		}
	})
}

// FuzzDecodeTemplate: a stored template, read from the database, never
// panics; one that decodes carries the device's credential and reads the
// same again once stored.
func FuzzDecodeTemplate(f *testing.F) {
	s, _ := suite.Lookup(1)
	a := newTestDevice(f, s, "@a:hs", "A")
	m, _ := offlineManager(f, 1, 5, 1, 24*time.Hour)
	tmpl, _, err := m.keyPackageTemplate(a.dev, a.sig)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(encodeTemplate(tmpl, a.dev))
	f.Add(codec.Marshal(tmpl))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeTemplate(b, a.dev)
		if err != nil {
			return
		}
		if !bytes.Equal(got.LeafNode.Credential.Identity, a.dev.Credential().Identity) {
			t.Fatalf("decoded a template of %q", got.LeafNode.Credential.Identity)
		}
		again, err := decodeTemplate(encodeTemplate(got, a.dev), a.dev)
		if err != nil || !bytes.Equal(codec.Marshal(again), codec.Marshal(got)) {
			t.Fatalf("a decoded template does not read the same once stored: %v", err)
		}
	})
}
