package suite

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
)

// The X25519 KEM and HPKE of x25519.go against crypto/ecdh and crypto/hpke.
func TestX25519AgainstStandardLibrary(t *testing.T) {
	std := hpke.DHKEM(ecdh.X25519())
	for range 20 {
		var k [32]byte
		rand.Read(k[:])
		sk, err := ecdh.X25519().NewPrivateKey(k[:])
		if err != nil {
			t.Fatal(err)
		}
		clamp(k[:])
		if got := x25519Base(k[:]); !bytes.Equal(got, sk.PublicKey().Bytes()) {
			t.Fatalf("fixed-base %x, crypto/ecdh %x", got, sk.PublicKey().Bytes())
		}
		var peer [32]byte
		rand.Read(peer[:])
		pk, _ := ecdh.X25519().NewPrivateKey(peer[:])
		want, _ := sk.ECDH(pk.PublicKey())
		if got, err := x25519(&k, pk.PublicKey().Bytes()); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ladder %x (%v), crypto/ecdh %x", got, err, want)
		}
	}
	for _, id := range []ID{X25519AES128GCMSHA256Ed25519, X25519ChaCha20Poly1305SHA256Ed25519} {
		s, _ := Lookup(id)
		t.Run(fmt.Sprint(id), func(t *testing.T) {
			ikm := make([]byte, s.HashSize())
			rand.Read(ikm)
			ours, err := s.DeriveHPKEKey(ikm)
			if err != nil {
				t.Fatal(err)
			}
			theirs, err := std.DeriveKeyPair(ikm)
			if err != nil {
				t.Fatal(err)
			}
			theirBytes, _ := theirs.Bytes()
			if !bytes.Equal(ours.Bytes(), theirBytes) || !bytes.Equal(ours.Public().Bytes(), theirs.PublicKey().Bytes()) {
				t.Fatal("DeriveKeyPair differs from crypto/hpke's")
			}
			info, pt := []byte("info"), []byte("plaintext")
			kdf, aead := hpkeKDF(s), hpkeAEAD(s)

			// Ours seals, crypto/hpke opens.
			enc, ct, err := ours.Public().key.seal(s, info, pt)
			if err != nil {
				t.Fatal(err)
			}
			r, err := hpke.NewRecipient(enc, theirs, kdf, aead, info)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := r.Open(nil, ct); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("crypto/hpke opens ours: %q, %v", got, err)
			}
			// crypto/hpke seals, ours opens.
			enc, snd, err := hpke.NewSender(theirs.PublicKey(), kdf, aead, info)
			if err != nil {
				t.Fatal(err)
			}
			ct, _ = snd.Seal(nil, pt)
			if got, err := ours.key.open(s, enc, info, ct); err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("ours opens crypto/hpke's: %q, %v", got, err)
			}
			// Export (with the empty info MLS uses), both ways.
			enc, snd, err = hpke.NewSender(theirs.PublicKey(), kdf, aead, nil)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := snd.Export("ctx", 42)
			if got, err := ours.ExportReceiver(enc, "ctx", 42); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("export: %x, %v, want %x", got, err, want)
			}
			enc, sent, err := ours.Public().ExportSender("ctx", 42)
			if err != nil {
				t.Fatal(err)
			}
			r, _ = hpke.NewRecipient(enc, theirs, kdf, aead, nil)
			if got, _ := r.Export("ctx", 42); !bytes.Equal(got, sent) {
				t.Fatal("crypto/hpke exports another secret")
			}
		})
	}
}

// A low-order point gives an all-zero shared secret, which DHKEM rejects
// (RFC 9180 §7.1.4).
func TestX25519RejectsLowOrderPoints(t *testing.T) {
	s, _ := Lookup(X25519AES128GCMSHA256Ed25519)
	k, _ := s.GenerateHPKEKey()
	for _, u := range [][]byte{make([]byte, 32), append([]byte{1}, make([]byte, 31)...)} {
		if _, err := k.DecryptWithLabel("L", nil, u, make([]byte, 32)); !errors.Is(err, ErrDecrypt) {
			t.Errorf("kem output %x: %v, want ErrDecrypt", u, err)
		}
		pub, err := s.NewHPKEPublicKey(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := pub.EncryptWithLabel("L", nil, []byte("x")); err == nil {
			t.Errorf("sealed to the low-order point %x", u)
		}
	}
}

func BenchmarkX25519(b *testing.B) {
	var k [32]byte
	rand.Read(k[:])
	clamp(k[:])
	pub := x25519Base(k[:])
	b.Run("fixed-base", func(b *testing.B) {
		for b.Loop() {
			x25519Base(k[:])
		}
	})
	b.Run("ladder", func(b *testing.B) {
		for b.Loop() {
			if _, err := x25519(&k, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ladder-generic", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := x25519LadderGeneric(&k, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Per ladder, eight run at once (ladder8.go).
	b.Run("ladder8", func(b *testing.B) {
		if !useIFMA {
			b.Skip("this CPU or build has no AVX-512 IFMA")
		}
		ks, us := make([]*[32]byte, ladder8Lanes), make([][]byte, ladder8Lanes)
		for l := range ks {
			ks[l], us[l] = &k, pub
		}
		for b.Loop() {
			x25519Ladder8(ks, us)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ladder8Lanes), "ns/ladder")
	})
	b.Run("crypto/ecdh", func(b *testing.B) {
		sk, _ := ecdh.X25519().NewPrivateKey(k[:])
		pk, _ := ecdh.X25519().NewPublicKey(pub)
		for b.Loop() {
			if _, err := sk.ECDH(pk); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestHasPublic: HasPublic agrees with comparing Public's encoding, in
// every suite, for the key's own public key, a damaged one, another key's,
// and in X25519 the same u with the top bit set (which field decoding
// ignores: refused only by the canonical check); a key that matched
// encodes pub as its public key.
func TestHasPublic(t *testing.T) {
	for _, s := range All() {
		for i := range 20 {
			k, err := s.GenerateHPKEKey()
			if err != nil {
				t.Fatal(err)
			}
			other, err := s.GenerateHPKEKey()
			if err != nil {
				t.Fatal(err)
			}
			fresh := func() *HPKEPrivateKey {
				c, err := s.NewHPKEPrivateKey(k.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			pub := k.Public().Bytes()
			damaged := bytes.Clone(pub)
			damaged[i%len(damaged)] ^= 1 << (i % 8)
			cases := map[string][]byte{"damaged": damaged, "another key's": other.Public().Bytes(), "empty": nil,
				"short": pub[:len(pub)-1]}
			if len(pub) == x25519Size {
				top := bytes.Clone(pub)
				top[31] |= 0x80
				cases["top bit set"] = top
			}
			c := fresh()
			if !c.HasPublic(pub) {
				t.Fatalf("suite %d: its own public key refused", s.ID())
			}
			if got := c.Public().Bytes(); !bytes.Equal(got, pub) {
				t.Fatalf("suite %d: public key %x after a match, want %x", s.ID(), got, pub)
			}
			for name, b := range cases {
				if fresh().HasPublic(b) {
					t.Fatalf("suite %d: %s (%x) accepted", s.ID(), name, b)
				}
			}
		}
	}
}

// TestPublishHPKEKeys: keys published together, some precomputed, some
// not, one whose public key was known before, one twice, get each the
// public key it gets alone, in every suite.
func TestPublishHPKEKeys(t *testing.T) {
	for _, s := range All() {
		for _, n := range []int{1, 2, 15} {
			var keys []*HPKEPrivateKey
			var want [][]byte
			for i := range n {
				k, err := s.GenerateHPKEKey()
				if err != nil {
					t.Fatal(err)
				}
				alone, err := s.NewHPKEPrivateKey(k.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, alone.Public().Bytes())
				switch i % 3 {
				case 0:
					k.Precompute()
				case 1:
					k.Public()
					k.Precompute()
				}
				keys = append(keys, k)
			}
			keys = append(keys, keys[0])
			want = append(want, want[0])
			PublishHPKEKeys(keys)
			for i, k := range keys {
				if got := k.Public().Bytes(); !bytes.Equal(got, want[i]) {
					t.Fatalf("suite %d, %d keys: key %d's public key %x, want %x", s.ID(), n, i, got, want[i])
				}
			}
		}
	}
}

func BenchmarkPublishHPKEKeys(b *testing.B) {
	s, _ := Lookup(1)
	keys := make([]*HPKEPrivateKey, 15)
	for i := range keys {
		keys[i], _ = s.GenerateHPKEKey()
	}
	b.Run("alone", func(b *testing.B) {
		for b.Loop() {
			for _, k := range keys {
				fresh, _ := s.NewHPKEPrivateKey(k.Bytes())
				fresh.Public()
			}
		}
	})
	b.Run("together", func(b *testing.B) {
		fresh := make([]*HPKEPrivateKey, len(keys))
		for b.Loop() {
			for i, k := range keys {
				fresh[i], _ = s.NewHPKEPrivateKey(k.Bytes())
				fresh[i].Precompute()
			}
			PublishHPKEKeys(fresh)
		}
	})
}
