package group

import (
	"bytes"
	"errors"
	"testing"

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
