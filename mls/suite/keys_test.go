package suite

import (
	"bytes"
	"errors"
	"testing"
)

func TestKeysRoundTrip(t *testing.T) {
	for _, s := range All() {
		t.Run(s.String(), func(t *testing.T) {
			sk, err := s.GenerateSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			sk2, err := s.NewSignaturePrivateKey(sk.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !sk2.Equal(sk) || !sk2.Public().Equal(sk.Public()) || sk2.Suite() != s {
				t.Fatal("signature private key does not round-trip")
			}
			pk, err := s.NewSignaturePublicKey(sk.Public().Bytes())
			if err != nil || !pk.Equal(sk.Public()) {
				t.Fatalf("signature public key does not round-trip: %v", err)
			}

			hk, err := s.GenerateHPKEKey()
			if err != nil {
				t.Fatal(err)
			}
			hk2, err := s.NewHPKEPrivateKey(hk.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !hk2.Equal(hk) || !hk2.Public().Equal(hk.Public()) || hk2.Suite() != s {
				t.Fatal("hpke private key does not round-trip")
			}
			hp, err := s.NewHPKEPublicKey(hk.Public().Bytes())
			if err != nil || !hp.Equal(hk.Public()) {
				t.Fatalf("hpke public key does not round-trip: %v", err)
			}

			// Derivation is deterministic: a node secret names one key.
			ikm := bytes.Repeat([]byte{7}, s.HashSize())
			d1, err1 := s.DeriveHPKEKey(ikm)
			d2, err2 := s.DeriveHPKEKey(ikm)
			if err1 != nil || err2 != nil || !d1.Equal(d2) || d1.Equal(hk) {
				t.Fatalf("derive: %v, %v", err1, err2)
			}

			// Bytes hands out copies: changing one leaves the key intact.
			b := sk.Bytes()
			b[0] ^= 1
			hb := hk.Bytes()
			hb[0] ^= 1
			if !sk.Equal(sk2) || !hk.Equal(hk2) {
				t.Fatal("Bytes exposed the key's storage")
			}
		})
	}
}

func TestKeysRejectBadEncodings(t *testing.T) {
	ed, _ := Lookup(X25519AES128GCMSHA256Ed25519)
	p256, _ := Lookup(P256AES128GCMSHA256P256)
	x448, _ := Lookup(X448AES256GCMSHA512Ed448)

	edKey, _ := ed.GenerateSignatureKey()
	full := append(edKey.Bytes(), edKey.Public().Bytes()...)
	if k, err := ed.NewSignaturePrivateKey(full); err != nil || !k.Equal(edKey) {
		t.Fatalf("64-byte Ed25519 key with matching halves: %v", err)
	}
	full[63] ^= 1

	pKey, _ := p256.GenerateSignatureKey()
	compressed := append([]byte{2 | pKey.Public().Bytes()[64]&1}, pKey.Public().Bytes()[1:33]...)
	offCurve := bytes.Clone(pKey.Public().Bytes())
	offCurve[64] ^= 1
	hKey, _ := p256.GenerateHPKEKey()
	hOffCurve := bytes.Clone(hKey.Public().Bytes())
	hOffCurve[64] ^= 1

	for _, c := range []struct {
		name string
		err  error
	}{
		{"ed25519 private key of 31 bytes", first(ed.NewSignaturePrivateKey(make([]byte, 31)))},
		{"ed25519 private key with a foreign public half", first(ed.NewSignaturePrivateKey(full))},
		{"ed25519 public key of 33 bytes", first(ed.NewSignaturePublicKey(make([]byte, 33)))},
		{"ecdsa scalar zero", first(p256.NewSignaturePrivateKey(make([]byte, 32)))},
		{"ecdsa scalar above the order", first(p256.NewSignaturePrivateKey(bytes.Repeat([]byte{0xff}, 32)))},
		{"ecdsa compressed point", first(p256.NewSignaturePublicKey(compressed))},
		{"ecdsa point off the curve", first(p256.NewSignaturePublicKey(offCurve))},
		{"x25519 private key of 33 bytes", first(ed.NewHPKEPrivateKey(make([]byte, 33)))},
		{"x25519 public key of 31 bytes", first(ed.NewHPKEPublicKey(make([]byte, 31)))},
		{"p-256 hpke point off the curve", first(p256.NewHPKEPublicKey(hOffCurve))},
		{"p-256 hpke scalar zero", first(p256.NewHPKEPrivateKey(make([]byte, 32)))},
		{"x448 public key of 32 bytes", first(x448.NewHPKEPublicKey(make([]byte, 32)))},
		{"x448 private key of 57 bytes", first(x448.NewHPKEPrivateKey(make([]byte, 57)))},
		{"ed448 private key of 32 bytes", first(x448.NewSignaturePrivateKey(make([]byte, 32)))},
	} {
		if c.err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func first[T any](_ T, err error) error { return err }

// FuzzKeyParsers feeds arbitrary bytes to the four key parsers of every
// suite: none may panic, and an accepted key must encode back to its input
// and, for a private key, agree with its public key.
func FuzzKeyParsers(f *testing.F) {
	for _, s := range All() {
		sk, _ := s.GenerateSignatureKey()
		hk, _ := s.GenerateHPKEKey()
		for _, b := range [][]byte{sk.Bytes(), sk.Public().Bytes(), hk.Bytes(), hk.Public().Bytes()} {
			f.Add(uint8(s.ID()), b)
		}
	}
	f.Fuzz(func(t *testing.T, id uint8, b []byte) {
		s, err := Lookup(ID(id))
		if err != nil {
			return
		}
		if k, err := s.NewSignaturePublicKey(b); err == nil && !bytes.Equal(k.Bytes(), b) {
			t.Fatalf("signature public key %x encodes as %x", b, k.Bytes())
		}
		if k, err := s.NewHPKEPublicKey(b); err == nil && !bytes.Equal(k.Bytes(), b) {
			t.Fatalf("hpke public key %x encodes as %x", b, k.Bytes())
		}
		if k, err := s.NewSignaturePrivateKey(b); err == nil {
			sig, err := k.SignWithLabel("F", b)
			if err != nil || k.Public().VerifyWithLabel("F", b, sig) != nil {
				t.Fatalf("signature key %x does not verify its own signature: %v", b, err)
			}
		}
		if k, err := s.NewHPKEPrivateKey(b); err == nil {
			if !bytes.Equal(k.Bytes(), b) {
				t.Fatalf("hpke private key %x encodes as %x", b, k.Bytes())
			}
			enc, ct, err := k.Public().EncryptWithLabel("F", nil, b)
			if err != nil {
				t.Fatal(err)
			}
			if pt, err := k.DecryptWithLabel("F", nil, enc, ct); err != nil || !bytes.Equal(pt, b) {
				t.Fatalf("hpke key %x does not open its own ciphertext: %v", b, err)
			}
		}
	})
}

func TestSuiteVerifyWithLabel(t *testing.T) {
	for _, s := range All() {
		k, _ := s.GenerateSignatureKey()
		sig, err := k.SignWithLabel("L", []byte("c"))
		if err != nil {
			t.Fatal(err)
		}
		pub := k.Public().Bytes()
		if err := s.VerifyWithLabel(pub, "L", []byte("c"), sig); err != nil {
			t.Errorf("%v: %v", s, err)
		}
		for name, key := range map[string][]byte{"truncated key": pub[:len(pub)-1], "empty key": nil} {
			if err := s.VerifyWithLabel(key, "L", []byte("c"), sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("%v, %s: %v, want ErrBadSignature", s, name, err)
			}
		}
		if err := s.VerifyWithLabel(pub, "L", []byte("d"), sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%v, other content: %v", s, err)
		}
	}
}

// TestSignaturesAreDeterministic: a KeyPackage re-derived from its secret
// must be the published one, signatures included, in every suite.
func TestSignaturesAreDeterministic(t *testing.T) {
	for _, s := range All() {
		k, err := s.GenerateSignatureKey()
		if err != nil {
			t.Fatal(err)
		}
		a, err := k.SignWithLabel("L", []byte("content"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := k.SignWithLabel("L", []byte("content"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%v: two signatures of one message differ", s)
		}
		if err := s.VerifyWithLabel(k.Public().Bytes(), "L", []byte("content"), a); err != nil {
			t.Errorf("%v: %v", s, err)
		}
	}
}

// TestSignatureSeedExpandedOnUse: a key parsed from an EdDSA seed, whose
// expansion waits for its first use, signs and has the public key of the
// same key parsed at once (seed and public half), also when its first
// uses race (go test -race).
func TestSignatureSeedExpandedOnUse(t *testing.T) {
	for _, s := range All() {
		e, ok := s.sig.(*eddsaScheme)
		if !ok {
			continue
		}
		t.Run(s.String(), func(t *testing.T) {
			gen, err := s.GenerateSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			seed := gen.Bytes()
			full, err := s.NewSignaturePrivateKey(append(bytes.Clone(seed), gen.Public().Bytes()...))
			if err != nil {
				t.Fatal(err)
			}
			lazy, err := s.NewSignaturePrivateKey(seed)
			if err != nil {
				t.Fatal(err)
			}
			if lazy.key != nil || len(seed) != e.seedSize {
				t.Fatal("a key parsed from a seed was expanded at once")
			}
			if !lazy.Equal(full) || !bytes.Equal(lazy.Bytes(), seed) {
				t.Fatal("a seed's key is not the key of the seed and its public half")
			}
			done := make(chan error, 2)
			go func() {
				sig, err := lazy.SignWithLabel("test", []byte("content"))
				if err == nil {
					err = full.Public().VerifyWithLabel("test", []byte("content"), sig)
				}
				done <- err
			}()
			go func() {
				if !lazy.Public().Equal(full.Public()) {
					done <- errors.New("public keys differ")
					return
				}
				done <- nil
			}()
			for range 2 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
