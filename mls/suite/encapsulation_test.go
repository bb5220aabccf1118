package suite

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// TestEncapsulation seals through an Encapsulation in every suite (split
// for X25519, whole for the others) and opens with the private key; a
// second seal with the same Encapsulation is refused, and two
// Encapsulations to one key use different ephemeral keys; a discarded
// Encapsulation seals nothing and holds no secret.
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
			discarded, err := priv.Public().Encapsulate()
			if err != nil {
				t.Fatal(err)
			}
			discarded.Discard()
			if _, _, err := discarded.EncryptWithLabel("UpdatePathNode", ctx, pt); err == nil {
				t.Fatal("a discarded Encapsulation sealed")
			}
			if slices.ContainsFunc(discarded.sharedSecret, func(b byte) bool { return b != 0 }) {
				t.Fatal("a discarded Encapsulation kept its shared secret")
			}
		})
	}
}

// TestEncapsulateAll: a batch of Encapsulations in every suite, one of
// them (in X25519) to a low-order point, which fails alone: every other
// seals what its key's holder opens, with an ephemeral key of its own.
func TestEncapsulateAll(t *testing.T) {
	for _, s := range All() {
		t.Run(s.String(), func(t *testing.T) {
			// 1 and 2 keys run their ladders alone; 3 to 8 as one
			// batch of eight lanes where the CPU has AVX-512 IFMA
			// (ladder8.go), 9 and 17 as batches and one alone.
			for _, n := range []int{0, 1, 2, 3, 5, 8, 9, 17} {
				var privs []*HPKEPrivateKey
				var keys []*HPKEPublicKey
				bad := -1
				for i := range n {
					if _, x := s.kem.(x25519KEM); i == 2 && x {
						low, err := s.NewHPKEPublicKey(make([]byte, 32))
						if err != nil {
							t.Fatal(err)
						}
						bad = i
						privs, keys = append(privs, nil), append(keys, low)
						continue
					}
					priv, err := s.GenerateHPKEKey()
					if err != nil {
						t.Fatal(err)
					}
					privs, keys = append(privs, priv), append(keys, priv.Public())
				}
				encs, errs := EncapsulateAll(keys)
				if len(encs) != n || len(errs) != n {
					t.Fatalf("%d keys: %d encapsulations, %d errors", n, len(encs), len(errs))
				}
				seen := map[string]bool{}
				for i := range n {
					if i == bad {
						if errs[i] == nil {
							t.Fatalf("%d keys: encapsulated to the low-order point", n)
						}
						continue
					}
					if errs[i] != nil {
						t.Fatalf("%d keys: key %d: %v", n, i, errs[i])
					}
					ctx, pt := []byte("group context"), []byte{byte(i)}
					kem, ct, err := encs[i].EncryptWithLabel("UpdatePathNode", ctx, pt)
					if err != nil {
						t.Fatal(err)
					}
					if seen[string(kem)] {
						t.Fatalf("%d keys: two share an ephemeral key", n)
					}
					seen[string(kem)] = true
					if got, err := privs[i].DecryptWithLabel("UpdatePathNode", ctx, kem, ct); err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("%d keys: key %d opened %x, %v", n, i, got, err)
					}
				}
			}
		})
	}
}

// TestDecryptAllWithLabel: a batch of decryptions in every suite, of
// ciphertexts sealed each to its own key, opens each as DecryptWithLabel
// would; a KEM output of the wrong size, a low-order point (in X25519)
// and a damaged ciphertext each fail alone with ErrDecrypt.
func TestDecryptAllWithLabel(t *testing.T) {
	for _, s := range All() {
		t.Run(s.String(), func(t *testing.T) {
			ctx := []byte("group context")
			c := s.NewSealContext("UpdatePathNode", ctx)
			for _, n := range []int{0, 1, 2, 3, 8, 9, 17} {
				keys := make([]*HPKEPrivateKey, n)
				kems, cts, pts := make([][]byte, n), make([][]byte, n), make([][]byte, n)
				for i := range n {
					var err error
					if keys[i], err = s.GenerateHPKEKey(); err != nil {
						t.Fatal(err)
					}
					pts[i] = []byte{byte(i), byte(n)}
					if kems[i], cts[i], err = keys[i].Public().EncryptWithLabel("UpdatePathNode", ctx, pts[i]); err != nil {
						t.Fatal(err)
					}
				}
				bad := map[int]string{}
				if n >= 3 {
					kems[0], bad[0] = kems[0][:len(kems[0])-1], "short KEM output"
					cts[n-1], bad[n-1] = append(bytes.Clone(cts[n-1][:len(cts[n-1])-1]), cts[n-1][len(cts[n-1])-1]^1), "damaged ciphertext"
					if _, x := s.kem.(x25519KEM); x {
						kems[1], bad[1] = make([]byte, 32), "low-order point"
					}
				}
				out, errs := DecryptAllWithLabel(c, keys, kems, cts)
				if len(out) != n || len(errs) != n {
					t.Fatalf("%d keys: %d plaintexts, %d errors", n, len(out), len(errs))
				}
				for i := range n {
					if why, ok := bad[i]; ok {
						if !errors.Is(errs[i], ErrDecrypt) {
							t.Errorf("%d keys: %s opened (%x, %v)", n, why, out[i], errs[i])
						}
						continue
					}
					if errs[i] != nil || !bytes.Equal(out[i], pts[i]) {
						t.Errorf("%d keys: key %d opened %x, %v; want %x", n, i, out[i], errs[i], pts[i])
					}
				}
			}
		})
	}
}
