package group

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
)

func TestNewKeyPackage(t *testing.T) {
	for _, s := range suite.All() {
		t.Run(s.String(), func(t *testing.T) {
			sig, err := s.GenerateSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			kp, err := NewKeyPackage(message.BasicCredential([]byte("alice")), sig, nil)
			if err != nil {
				t.Fatal(err)
			}
			if kp.KeyPackage.CipherSuite != s.ID() || kp.SignatureKey != sig {
				t.Fatalf("suite %d, signature key %p", kp.KeyPackage.CipherSuite, kp.SignatureKey)
			}
			if err := kp.Check(); err != nil {
				t.Fatal(err)
			}
			if err := tree.ValidateKeyPackage(s, &kp.KeyPackage, tree.LeafContext{}); err != nil {
				t.Fatal(err)
			}
			if kp.InitKey.Equal(kp.EncryptionKey) {
				t.Fatal("init key and encryption key are the same")
			}
		})
	}
	if _, err := NewKeyPackage(message.BasicCredential([]byte("x")), nil, nil); err == nil {
		t.Fatal("no signature key accepted")
	}
}

func TestKeyPackageBundleStorage(t *testing.T) {
	kp := newBundle(t, suite.P256AES128GCMSHA256P256, "alice")
	data, err := kp.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnmarshalKeyPackageBundle(data, kp.SignatureKey)
	if err != nil {
		t.Fatal(err)
	}
	if !got.InitKey.Equal(kp.InitKey) || !got.EncryptionKey.Equal(kp.EncryptionKey) || got.SignatureKey != kp.SignatureKey ||
		!bytes.Equal(got.KeyPackage.Ref(kp.SignatureKey.Suite()), kp.KeyPackage.Ref(kp.SignatureKey.Suite())) {
		t.Fatal("bundle does not round-trip")
	}
	if bytes.Contains(data, kp.SignatureKey.Bytes()) {
		t.Fatal("the encoding holds the signature key")
	}

	other := newBundle(t, suite.P256AES128GCMSHA256P256, "bob")
	otherData, _ := other.MarshalBinary()
	// Bob's init key in alice's bundle: decodes, but does not match.
	swapped := bytes.Clone(data)
	copy(swapped[len(swapped)-2*(32+1):], otherData[len(otherData)-2*(32+1):len(otherData)-(32+1)])
	for _, c := range []struct {
		name string
		data []byte
		key  *suite.SignaturePrivateKey
	}{
		{"another signature key", data, other.SignatureKey},
		{"no signature key", data, nil},
		{"another bundle's init key", swapped, kp.SignatureKey},
		{"truncated", data[:len(data)-1], kp.SignatureKey},
		{"unknown version", append([]byte{2}, data[1:]...), kp.SignatureKey},
		{"another suite in the header", append([]byte{1, 0, 1}, data[3:]...), kp.SignatureKey},
	} {
		if _, err := UnmarshalKeyPackageBundle(c.data, c.key); !errors.Is(err, ErrInvalidState) {
			t.Errorf("%s: %v, want ErrInvalidState", c.name, err)
		}
	}

	// A bundle whose keys do not match is neither stored nor used.
	bad := *kp
	bad.EncryptionKey = other.EncryptionKey
	if _, err := bad.MarshalBinary(); !errors.Is(err, ErrInvalidState) {
		t.Errorf("marshal mismatched bundle: %v", err)
	}
	if _, err := Create(&bad, []byte("g"), nil, Config{}); !errors.Is(err, ErrInvalidState) {
		t.Errorf("create from mismatched bundle: %v", err)
	}
}

func FuzzUnmarshalKeyPackageBundle(f *testing.F) {
	kp := newBundle(f, s1, "alice")
	data, err := kp.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := UnmarshalKeyPackageBundle(data, kp.SignatureKey)
		if err != nil {
			if !errors.Is(err, ErrInvalidState) {
				t.Fatalf("error %v does not match ErrInvalidState", err)
			}
			return
		}
		again, err := got.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}

// TestDeriveKeyPackage: a KeyPackage derived again from its template,
// secret and signature key is the one first derived, byte for byte, in
// every suite, and opens the Welcome that adds it.
func TestDeriveKeyPackage(t *testing.T) {
	for _, s := range suite.All() {
		t.Run(s.String(), func(t *testing.T) {
			sig, err := s.GenerateSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			template, err := NewKeyPackageTemplate(message.BasicCredential([]byte("bob")), sig, nil)
			if err != nil {
				t.Fatal(err)
			}
			kept := codec.Marshal(template)
			secret := bytes.Repeat([]byte{7}, s.HashSize())
			kp, err := DeriveKeyPackage(template, secret, sig)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(codec.Marshal(template), kept) {
				t.Fatal("DeriveKeyPackage changed its template")
			}
			if err := kp.Check(); err != nil {
				t.Fatal(err)
			}
			if err := tree.ValidateKeyPackage(s, &kp.KeyPackage, tree.LeafContext{}); err != nil {
				t.Fatal(err)
			}
			// Derived again from the template as stored.
			var stored message.KeyPackage
			if err := codec.Unmarshal(kept, &stored, "template"); err != nil {
				t.Fatal(err)
			}
			again, err := DeriveKeyPackage(&stored, secret, sig)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(codec.Marshal(&again.KeyPackage), codec.Marshal(&kp.KeyPackage)) ||
				!again.InitKey.Equal(kp.InitKey) || !again.EncryptionKey.Equal(kp.EncryptionKey) {
				t.Fatal("derived twice, two KeyPackages")
			}
			other, err := DeriveKeyPackage(template, bytes.Repeat([]byte{8}, s.HashSize()), sig)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(other.KeyPackage.InitKey, kp.KeyPackage.InitKey) || kp.InitKey.Equal(kp.EncryptionKey) {
				t.Fatal("keys repeat across secrets or roles")
			}

			alice, err := NewKeyPackage(message.BasicCredential([]byte("alice")), mustSignatureKey(t, s), nil)
			if err != nil {
				t.Fatal(err)
			}
			g, err := Create(alice, []byte("derived"), nil, Config{})
			if err != nil {
				t.Fatal(err)
			}
			pc, err := g.Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&kp.KeyPackage)}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Join(pc.Welcome, again, nil); err != nil {
				t.Fatalf("join with the KeyPackage derived again: %v", err)
			}
		})
	}
	s := suite.All()[0]
	sig, _ := s.GenerateSignatureKey()
	template, _ := NewKeyPackageTemplate(message.BasicCredential([]byte("bob")), sig, nil)
	other, _ := suite.All()[1].GenerateSignatureKey()
	for name, c := range map[string]struct {
		secret []byte
		sig    *suite.SignaturePrivateKey
	}{
		"short secret":         {make([]byte, s.HashSize()-1), sig},
		"no signature key":     {make([]byte, s.HashSize()), nil},
		"key of another suite": {make([]byte, s.HashSize()), other},
	} {
		if _, err := DeriveKeyPackage(template, c.secret, c.sig); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustSignatureKey(t *testing.T, s *suite.Suite) *suite.SignaturePrivateKey {
	t.Helper()
	k, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
