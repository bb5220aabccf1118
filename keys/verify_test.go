package keys

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

func TestCanonicalJSON(t *testing.T) {
	// Examples of the Matrix specification's appendix on canonical JSON.
	tests := []struct{ in, want string }{
		{`{}`, `{}`},
		{`{"one": 1, "two": "Two"}`, `{"one":1,"two":"Two"}`},
		{`{"b": "2", "a": "1"}`, `{"a":"1","b":"2"}`},
		{`{"auth":{"success":true,"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"medium":"email","address":"john.doe@example.org"},{"medium":"msisdn","address":"123456789"}]}}}`,
			`{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`},
		{`{"a": "日本語"}`, `{"a":"日本語"}`},
		{`{"本": 2, "日": 1}`, `{"日":1,"本":2}`},
		{`{"a": "\u65E5"}`, `{"a":"日"}`},
		{`{"a": null}`, `{"a":null}`},
		{`{"a": "\u0001\n\"\\/"}`, `{"a":"\u0001\n\"\\/"}`},
		{`{"a": -0}`, `{"a":0}`},
	}
	for _, tc := range tests {
		v, err := decodeValue([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := canonical(v)
		if err != nil || string(got) != tc.want {
			t.Errorf("canonical(%s) = %s, %v; want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`{"a": 1.5}`, `{"a": 9007199254740992}`, `{"a": 1e3}`} {
		v, err := decodeValue([]byte(bad))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := canonical(v); !errors.Is(err, errNotCanonical) {
			t.Errorf("canonical(%s) accepted", bad)
		}
	}
}

// testDevice is a device with an identity, as a misbehaving or honest
// remote device would publish it.
type testDevice struct {
	dev  Device
	sig  *suite.SignaturePrivateKey
	keys json.RawMessage
}

func newTestDevice(t testing.TB, s *suite.Suite, user, device string) testDevice {
	t.Helper()
	sig, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	d := Device{UserID: idUser(user), DeviceID: idDevice(device)}
	dk, err := buildDeviceKeys(d, sig)
	if err != nil {
		t.Fatal(err)
	}
	return testDevice{d, sig, dk}
}

func keyPackageValue(t testing.TB, cred message.Credential, sig *suite.SignaturePrivateKey, o *group.KeyPackageOptions, mutate func(*message.KeyPackage)) string {
	t.Helper()
	b, err := group.NewKeyPackage(cred, sig, o)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(&b.KeyPackage)
	}
	return b64.EncodeToString(codec.Marshal(&message.MLSMessage{Version: message.MLS10, WireFormat: message.WireFormatKeyPackage, KeyPackage: &b.KeyPackage}))
}

func TestVerify(t *testing.T) {
	for _, id := range []suite.ID{1, 2, 3} {
		s, _ := suite.Lookup(id)
		t.Run(s.String(), func(t *testing.T) {
			a := newTestDevice(t, s, "@a:hs", "A")
			v, _ := decodeValue(a.keys)
			p, err := verifyDeviceKeys(a.dev, s, v)
			if err != nil {
				t.Fatalf("our own device keys refused: %v", err)
			}
			now := time.Now()
			good := keyPackageValue(t, a.dev.Credential(), a.sig, nil, nil)
			if _, err := verifyKeyPackage(s, a.dev, p.CredentialKey, good, now); err != nil {
				t.Fatalf("good key package refused: %v", err)
			}
			other, _ := s.GenerateSignatureKey()
			otherSuite, _ := suite.Lookup(map[suite.ID]suite.ID{1: 3, 2: 1, 3: 1}[id])
			otherSuiteKey, _ := otherSuite.GenerateSignatureKey()
			expired := &group.KeyPackageOptions{Lifetime: &message.Lifetime{NotBefore: uint64(now.Add(-48 * time.Hour).Unix()), NotAfter: uint64(now.Add(-24 * time.Hour).Unix())}}
			tests := []struct {
				name  string
				value string
				want  Reason
			}{
				{"names another device", keyPackageValue(t, Device{a.dev.UserID, "B"}.Credential(), a.sig, nil, nil), ReasonCredential},
				{"names another user", keyPackageValue(t, Device{"@b:hs", "A"}.Credential(), a.sig, nil, nil), ReasonCredential},
				{"other signature key", keyPackageValue(t, a.dev.Credential(), other, nil, nil), ReasonSignatureKey},
				{"bad signature", keyPackageValue(t, a.dev.Credential(), a.sig, nil, func(kp *message.KeyPackage) { kp.Signature[5] ^= 1 }), ReasonSignature},
				{"bad leaf signature", keyPackageValue(t, a.dev.Credential(), a.sig, nil, func(kp *message.KeyPackage) { kp.LeafNode.Signature[5] ^= 1 }), ReasonSignature},
				{"other suite", keyPackageValue(t, a.dev.Credential(), otherSuiteKey, nil, nil), ReasonSuite},
				{"expired", keyPackageValue(t, a.dev.Credential(), a.sig, expired, nil), ReasonLifetime},
				{"not base64", "!!", ReasonMalformed},
				{"not an MLSMessage", b64.EncodeToString([]byte{0, 1, 0, 5, 1}), ReasonMalformed},
			}
			for _, tc := range tests {
				_, err := verifyKeyPackage(s, a.dev, p.CredentialKey, tc.value, now)
				var r *Refusal
				if !errors.As(err, &r) || r.Reason != tc.want {
					t.Errorf("%s: %v, want reason %s", tc.name, err, tc.want)
				}
			}
		})
	}
}

func TestVerifyDeviceKeysRefusals(t *testing.T) {
	s, _ := suite.Lookup(1)
	a := newTestDevice(t, s, "@a:hs", "A")
	edit := func(f func(obj map[string]any)) any {
		v, _ := decodeValue(a.keys)
		f(v.(map[string]any))
		return v
	}
	tests := []struct {
		name string
		obj  any
		want Reason
	}{
		{"not an object", "x", ReasonDeviceKeys},
		{"other device", edit(func(o map[string]any) { o["device_id"] = "B" }), ReasonDeviceKeys},
		{"no algorithm", edit(func(o map[string]any) { o["algorithms"] = []any{"m.olm.v1.curve25519-aes-sha2"} }), ReasonDeviceKeys},
		{"no credential key", edit(func(o map[string]any) { delete(o["keys"].(map[string]any), CredentialKeyID(1, "A")) }), ReasonDeviceKeys},
		{"bad credential key", edit(func(o map[string]any) { o["keys"].(map[string]any)[CredentialKeyID(1, "A")] = "AAAA" }), ReasonDeviceKeys},
		{"unsigned", edit(func(o map[string]any) { delete(o, "signatures") }), ReasonDeviceSignature},
		{"changed after signing", edit(func(o map[string]any) { o["algorithms"] = append(o["algorithms"].([]any), "x") }), ReasonDeviceSignature},
		{"bad signature", edit(func(o map[string]any) {
			o["signatures"].(map[string]any)["@a:hs"].(map[string]any)[CredentialKeyID(1, "A")] = b64.EncodeToString(make([]byte, 64))
		}), ReasonDeviceSignature},
	}
	for _, tc := range tests {
		_, err := verifyDeviceKeys(a.dev, s, tc.obj)
		var r *Refusal
		if !errors.As(err, &r) || r.Reason != tc.want {
			t.Errorf("%s: %v, want reason %s", tc.name, err, tc.want)
		}
	}
	// Unsigned and unknown members outside the signature may change.
	ok := edit(func(o map[string]any) { o["unsigned"] = map[string]any{"device_display_name": "x"} })
	if _, err := verifyDeviceKeys(a.dev, s, ok); err != nil {
		t.Errorf("unsigned member broke the signature: %v", err)
	}
}

func TestCrossSignedCheck(t *testing.T) {
	s, _ := suite.Lookup(1)
	a := newTestDevice(t, s, "@a:hs", "A")
	cs := &crossSigning{user: "@a:hs", master: newEd25519(t), self: newEd25519(t)}
	master, _ := crossSigningKey(cs.user, "master", cs.master, nil)
	self, _ := crossSigningKey(cs.user, "self_signing", cs.self, cs.master)
	v, _ := decodeValue(a.keys)
	obj := v.(map[string]any)
	if err := signObject(obj, cs.user, cs.self); err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"device_keys": map[string]any{"@a:hs": map[string]any{"A": obj}},
		"master_keys": map[string]any{"@a:hs": master}, "self_signing_keys": map[string]any{"@a:hs": self}})
	q, err := parseQuery(body)
	if err != nil {
		t.Fatal(err)
	}
	p, err := verifyDeviceKeys(a.dev, s, q.devices[a.dev])
	if err != nil {
		t.Fatal(err)
	}
	if !q.crossSigned("@a:hs", p) {
		t.Fatal("cross-signed device not recognised")
	}
	forged, _ := crossSigningKey(cs.user, "self_signing", cs.self, newEd25519(t))
	q.selfSigning["@a:hs"] = forged
	if q.crossSigned("@a:hs", p) {
		t.Fatal("self-signing key not signed by the master key accepted")
	}
}

func TestSealedRowsAreBound(t *testing.T) {
	m, sealer := offlineManager(t, 1, 2, 1, 24*time.Hour)
	s, _ := suite.Lookup(1)
	a := newTestDevice(t, s, "@a:hs", "A")
	var made []*newLastResort
	var stored []*lastResort
	for i := range 2 {
		n, err := m.makeLastResort(a.dev, a.sig)
		if err != nil {
			t.Fatal(err)
		}
		c, err := n.seal(sealer, a.dev, fmt.Sprintf("txn%d", i))
		if err != nil {
			t.Fatal(err)
		}
		made, stored = append(made, n), append(stored, c)
	}
	if made[0].kp.keyID == made[1].kp.keyID {
		t.Fatal("two key packages share a key id")
	}
	for i, n := range made {
		if !bytes.Equal(n.secret, make([]byte, len(n.secret))) {
			t.Fatalf("last resort %d: secret not wiped once sealed", i)
		}
	}
	// Derived again from its row, a last-resort KeyPackage is the one
	// uploaded.
	b, secret, err := stored[1].derive(sealer, a.dev, a.sig)
	if err != nil || keyID(b.KeyPackage.Ref(s)) != made[1].kp.keyID {
		t.Fatalf("stored last-resort KeyPackage: %v", err)
	}
	// Its secret is bound to its row: the device and its upload.
	swapped := *stored[0]
	swapped.sealed = stored[1].sealed
	if _, _, err := swapped.derive(sealer, a.dev, a.sig); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("a last-resort secret opened in another row: %v", err)
	}
	other := newTestDevice(t, s, "@b:hs", "B")
	if _, _, err := stored[1].derive(sealer, other.dev, other.sig); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("a last-resort secret opened for another device: %v", err)
	}
	// The template is public: another template with this secret derives
	// a KeyPackage of another ref, which derive refuses.
	var tpl message.KeyPackage
	if err := codec.Unmarshal(stored[1].template, &tpl, "key_package_template"); err != nil {
		t.Fatal(err)
	}
	tpl.LeafNode.Lifetime.NotAfter++
	forged := *stored[1]
	forged.template = codec.Marshal(&tpl)
	if _, _, err := forged.derive(sealer, a.dev, a.sig); err == nil {
		t.Fatal("another template accepted for a stored last-resort KeyPackage")
	}
	// A retired one is stored in a row of its own, bound to its key id.
	kid := made[1].kp.keyID
	sealed, err := sealer.Seal(purposeKeyPackage, keyPackageRow(a.dev, kid), secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sealer.Open(purposeKeyPackage, keyPackageRow(a.dev, made[0].kp.keyID), sealed); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("a key package's private keys opened in another row: %v", err)
	}
	if b2, err := storedBundle(a.dev, stored[1].template, secret, a.sig); err != nil || keyID(b2.KeyPackage.Ref(s)) != kid {
		t.Fatalf("retired last-resort KeyPackage: %v", err)
	}
	// A row made before migration 0014 holds the sealed bundle.
	old, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if b2, err := storedBundle(a.dev, nil, old, a.sig); err != nil || keyID(b2.KeyPackage.Ref(s)) != kid {
		t.Fatalf("stored bundle of an older row: %v", err)
	}
}
