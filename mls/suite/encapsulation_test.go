package suite

import (
	"bytes"
	"testing"
)

// TestEncapsulation seals through an Encapsulation in every suite (split
// for X25519, whole for the others) and opens with the private key; a
// second seal with the same Encapsulation is refused, and two
// Encapsulations to one key use different ephemeral keys.
func TestEncapsulation(t *testing.T) {
	for _, s := range All() {
		t.Run(s.String(), func(t *testing.T) {
			priv, err := s.GenerateHPKEKey()
			if err != nil {
				t.Fatal(err)
			}
			e, err := priv.Public().Encapsulate()
			if err != nil {
				t.Fatal(err)
			}
			other, err := priv.Public().Encapsulate()
			if err != nil {
				t.Fatal(err)
			}
			ctx, pt := []byte("group context"), []byte("path secret")
			kem, ct, err := e.EncryptWithLabel("UpdatePathNode", ctx, pt)
			if err != nil {
				t.Fatal(err)
			}
			got, err := priv.DecryptWithLabel("UpdatePathNode", ctx, kem, ct)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("open: %q, %v", got, err)
			}
			if _, err := priv.DecryptWithLabel("UpdatePathNode", []byte("another context"), kem, ct); err == nil {
				t.Fatal("opened under another context")
			}
			if _, _, err := e.EncryptWithLabel("UpdatePathNode", ctx, pt); err == nil {
				t.Fatal("an Encapsulation sealed twice")
			}
			kem2, _, err := other.EncryptWithLabel("UpdatePathNode", ctx, pt)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(kem, kem2) {
				t.Fatal("two Encapsulations share an ephemeral key")
			}
		})
	}
}
