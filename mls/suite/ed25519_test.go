package suite

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"testing"

	"filippo.io/edwards25519"
)

func ed25519Suite(t testing.TB) *Suite {
	t.Helper()
	s, err := Lookup(X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signedChecks returns n checks, each signed by a key of its own.
func signedChecks(t testing.TB, s *Suite, n, signers int) []SignatureCheck {
	t.Helper()
	checks := make([]SignatureCheck, n)
	keys := make([]*SignaturePrivateKey, signers)
	for i := range keys {
		var err error
		if keys[i], err = s.GenerateSignatureKey(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range checks {
		k := keys[i%signers]
		content := fmt.Appendf(nil, "leaf %d", i)
		sig, err := k.SignWithLabel("LeafNodeTBS", content)
		if err != nil {
			t.Fatal(err)
		}
		checks[i] = SignatureCheck{Key: k.Public().Bytes(), Label: "LeafNodeTBS", Content: content, Signature: sig}
	}
	return checks
}

// TestEd25519AgreesWithStandardLibrary checks single verification against
// crypto/ed25519 on valid signatures and on every kind of one-bit damage
// to key, message and signature: on these the cofactored and the
// cofactorless equations agree.
func TestEd25519AgreesWithStandardLibrary(t *testing.T) {
	rng := mathrand.New(mathrand.NewPCG(1, 2))
	for i := range 2000 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, 1+rng.IntN(100))
		rand.Read(msg)
		sig := ed25519.Sign(priv, msg)
		switch i % 4 {
		case 1:
			pub = bytes.Clone(pub)
			pub[rng.IntN(32)] ^= 1 << rng.IntN(8)
		case 2:
			msg[rng.IntN(len(msg))] ^= 1 << rng.IntN(8)
		case 3:
			sig[rng.IntN(64)] ^= 1 << rng.IntN(8)
		}
		want := ed25519.Verify(pub, msg, sig)
		k, err := newEd25519Public(pub)
		got := err == nil && k.verify(msg, sig)
		if got != want {
			t.Fatalf("case %d (damage %d): ours %v, crypto/ed25519 %v (key error %v)", i, i%4, got, want, err)
		}
		if want != (i%4 == 0) {
			t.Fatalf("case %d: crypto/ed25519 says %v", i, want)
		}
	}
}

// torsion is the point (sqrt(-1), 0), of order 4.
func torsion(t testing.TB) *edwards25519.Point {
	t.Helper()
	p, err := new(edwards25519.Point).SetBytes(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// signWithTorsion signs msg as RFC 8032 does but adds a small-order point
// to R (inR) or to the public key A: what a key holder could do to make a
// signature that the cofactorless equation refuses and the cofactored one
// accepts.
func signWithTorsion(t testing.TB, msg []byte, inR bool) (pub, sig []byte) {
	t.Helper()
	var wide [64]byte
	rand.Read(wide[:])
	a, _ := new(edwards25519.Scalar).SetUniformBytes(wide[:])
	rand.Read(wide[:])
	r, _ := new(edwards25519.Scalar).SetUniformBytes(wide[:])
	A := new(edwards25519.Point).ScalarBaseMult(a)
	R := new(edwards25519.Point).ScalarBaseMult(r)
	if inR {
		R.Add(R, torsion(t))
	} else {
		A.Add(A, torsion(t))
	}
	pub, rEnc := A.Bytes(), R.Bytes()
	h := sha512.New()
	h.Write(rEnc)
	h.Write(pub)
	h.Write(msg)
	k, _ := new(edwards25519.Scalar).SetUniformBytes(h.Sum(nil))
	s := new(edwards25519.Scalar).MultiplyAdd(k, a, r)
	return pub, append(rEnc, s.Bytes()...)
}

// TestEd25519Cofactored pins the one place where verification here
// departs from crypto/ed25519 (ed25519.go): a small-order component in R
// or A. Single and batch verification must decide alike.
func TestEd25519Cofactored(t *testing.T) {
	s := ed25519Suite(t)
	for _, inR := range []bool{true, false} {
		content := []byte("content")
		// With the torsion in A, the cofactorless equation holds when
		// k kills it (k = 0 mod 4, one time in four): sign again.
		pub, sig := signWithTorsion(t, signContent("LeafNodeTBS", content), inR)
		for tries := 0; ed25519.Verify(pub, signContent("LeafNodeTBS", content), sig); tries++ {
			if tries == 64 {
				t.Fatalf("torsion in R %v: the cofactorless equation keeps accepting; the test is wrong", inR)
			}
			pub, sig = signWithTorsion(t, signContent("LeafNodeTBS", content), inR)
		}
		if err := s.VerifyWithLabel(pub, "LeafNodeTBS", content, sig); err != nil {
			t.Fatalf("torsion in R %v: single verification refused: %v", inR, err)
		}
		checks := append(signedChecks(t, s, 5, 5), SignatureCheck{Key: pub, Label: "LeafNodeTBS", Content: content, Signature: sig})
		if bad, err := s.VerifyBatch(checks); bad != -1 || err != nil {
			t.Fatalf("torsion in R %v: batch refused %d: %v", inR, bad, err)
		}
	}
}

func TestEd25519RejectsNonCanonicalEncodings(t *testing.T) {
	s := ed25519Suite(t)
	checks := signedChecks(t, s, 1, 1)
	c := checks[0]
	order := []byte{ // L, little-endian
		0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
	}
	ff := bytes.Repeat([]byte{0xff}, 30)
	encodings := map[string][]byte{
		"y = p":                append(append([]byte{0xed}, ff...), 0x7f),
		"y = p+1":              append(append([]byte{0xee}, ff...), 0x7f),
		"y = p-1 with sign":    append(append([]byte{0xec}, ff...), 0xff),
		"y = 1 with sign":      append(append([]byte{1}, make([]byte, 30)...), 0x80),
		"y = 2^255-1 and sign": bytes.Repeat([]byte{0xff}, 32),
	}
	for name, enc := range encodings {
		if canonicalEd25519(enc) {
			t.Errorf("%s: taken as canonical", name)
		}
		if _, err := s.NewSignaturePublicKey(enc); err == nil {
			t.Errorf("%s: accepted as a public key", name)
		}
		sig := append(bytes.Clone(enc), c.Signature[32:]...)
		if err := s.VerifyWithLabel(c.Key, c.Label, c.Content, sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: accepted as R: %v", name, err)
		}
	}
	// y = p-1 without sign (the point of order 2) and y = 1 (the identity)
	// are canonical.
	for _, enc := range [][]byte{append(append([]byte{0xec}, ff...), 0x7f), append([]byte{1}, make([]byte, 31)...)} {
		if !canonicalEd25519(enc) {
			t.Errorf("%x: refused as not canonical", enc)
		}
	}
	// S = L: the same signature with S+L refused.
	bad := append(bytes.Clone(c.Signature[:32]), addLE(c.Signature[32:], order)...)
	if err := s.VerifyWithLabel(c.Key, c.Label, c.Content, bad); !errors.Is(err, ErrBadSignature) {
		t.Errorf("S + L accepted: %v", err)
	}
	if err := s.VerifyWithLabel(c.Key, c.Label, c.Content, c.Signature[:63]); !errors.Is(err, ErrBadSignature) {
		t.Errorf("63-byte signature accepted: %v", err)
	}
}

// addLE adds two 32-byte little-endian numbers (no overflow past 2^256 for
// a scalar below L plus L).
func addLE(a, b []byte) []byte {
	out := make([]byte, 32)
	carry := 0
	for i := range 32 {
		v := int(a[i]) + int(b[i]) + carry
		out[i], carry = byte(v), v>>8
	}
	return out
}

// TestVerifyBatch damages one or two of 70 checks in every way and
// expects the first damaged one reported, with 70, 7 and 1 signers: a
// batch gathers each key's terms.
func TestVerifyBatch(t *testing.T) {
	for _, id := range []ID{X25519AES128GCMSHA256Ed25519, P256AES128GCMSHA256P256} {
		s, err := Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		stranger, err := s.GenerateSignatureKey()
		if err != nil {
			t.Fatal(err)
		}
		for _, signers := range []int{70, 7, 1} {
			checks := signedChecks(t, s, 70, signers)
			rng := mathrand.New(mathrand.NewPCG(3, uint64(signers)))
			for _, n := range []int{0, 1, 2, 3, 17, 70} {
				if bad, err := s.VerifyBatch(checks[:n]); bad != -1 || err != nil {
					t.Fatalf("suite %d, %d signers: %d valid signatures: %d, %v", id, signers, n, bad, err)
				}
			}
			// Each damages check i of the list.
			damage := map[string]func(c *SignatureCheck, i int){
				"signature": func(c *SignatureCheck, _ int) { c.Signature = bytes.Clone(c.Signature); c.Signature[5] ^= 4 },
				"content":   func(c *SignatureCheck, _ int) { c.Content = append(bytes.Clone(c.Content), 0) },
				"label":     func(c *SignatureCheck, _ int) { c.Label = "KeyPackageTBS" },
				"key": func(c *SignatureCheck, i int) {
					if signers == 1 {
						c.Key = stranger.Public().Bytes()
						return
					}
					// Another signer's, which the batch holds too (70 is
					// a multiple of signers).
					c.Key = checks[(i+1+rng.IntN(signers-1))%70].Key
				},
				"short key": func(c *SignatureCheck, _ int) { c.Key = c.Key[:10] },
			}
			for name, f := range damage {
				for range 5 {
					cs := append([]SignatureCheck(nil), checks...)
					first := rng.IntN(70)
					f(&cs[first], first)
					second := first + rng.IntN(70-first)
					if second != first {
						f(&cs[second], second)
					}
					bad, err := s.VerifyBatch(cs)
					if bad != first || !errors.Is(err, ErrBadSignature) {
						t.Fatalf("suite %d, %d signers: %s damaged at %d and %d: reported %d, %v", id, signers, name, first, second, bad, err)
					}
				}
			}
		}
	}
}

// FuzzEd25519PointDecoding checks decodeEd25519Point against its
// definition: it accepts exactly the encodings that decode to a point
// whose own encoding they are.
func FuzzEd25519PointDecoding(f *testing.F) {
	ff := bytes.Repeat([]byte{0xff}, 30)
	for _, seed := range [][]byte{
		make([]byte, 32),
		append([]byte{1}, make([]byte, 31)...),
		append(append([]byte{1}, make([]byte, 30)...), 0x80),
		append(append([]byte{0xec}, ff...), 0x7f),
		append(append([]byte{0xec}, ff...), 0xff),
		append(append([]byte{0xed}, ff...), 0x7f),
		edwards25519.NewGeneratorPoint().Bytes(),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeEd25519Point(b)
		q, qerr := new(edwards25519.Point).SetBytes(b)
		want := qerr == nil && bytes.Equal(q.Bytes(), b)
		if (err == nil) != want {
			t.Fatalf("%x: decoded %v, canonical point %v", b, err, want)
		}
		if err == nil && p.Equal(q) != 1 {
			t.Fatalf("%x: decoded to another point", b)
		}
	})
}

// BenchmarkEd25519Verify compares crypto/ed25519 with verification here,
// one by one and in batches, per signature.
func BenchmarkEd25519Verify(b *testing.B) {
	s := ed25519Suite(b)
	checks := signedChecks(b, s, 256, 256)
	msgs := make([][]byte, len(checks))
	for i, c := range checks {
		msgs[i] = signContent(c.Label, c.Content)
	}
	b.Run("stdlib", func(b *testing.B) {
		i := 0
		for b.Loop() {
			c := checks[i%len(checks)]
			if !ed25519.Verify(c.Key, msgs[i%len(checks)], c.Signature) {
				b.Fatal("refused")
			}
			i++
		}
	})
	b.Run("single", func(b *testing.B) {
		i := 0
		for b.Loop() {
			c := checks[i%len(checks)]
			if err := s.Verify(c); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	oneSigner := signedChecks(b, s, 32, 1)
	for _, c := range []struct {
		name   string
		checks []SignatureCheck
	}{
		{"batch=2", checks[:2]}, {"batch=8", checks[:8]}, {"batch=64", checks[:64]}, {"batch=256", checks},
		{"batch=2/one-signer", oneSigner[:2]}, {"batch=32/one-signer", oneSigner},
	} {
		n := len(c.checks)
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if bad, err := s.VerifyBatch(c.checks); err != nil {
					b.Fatal(bad, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/signature")
		})
	}
}

// FuzzEd25519Batch checks batch verification against single verification:
// for three checks built from the input (a valid signature each, then the
// fuzzer's bytes laid over key, signature or content), VerifyBatch reports
// the first check that VerifyWithLabel refuses, or none.
func FuzzEd25519Batch(f *testing.F) {
	s := ed25519Suite(f)
	valid := signedChecks(f, s, 3, 2) // the first and last by one key
	f.Add(uint8(0), uint8(0), []byte{})
	f.Add(uint8(1), uint8(40), []byte{1})
	f.Add(uint8(4), uint8(0), bytes.Repeat([]byte{0xff}, 32))
	f.Add(uint8(8), uint8(32), make([]byte, 32))
	f.Fuzz(func(t *testing.T, where, at uint8, data []byte) {
		checks := make([]SignatureCheck, len(valid))
		for i, c := range valid {
			checks[i] = SignatureCheck{Key: bytes.Clone(c.Key), Label: c.Label, Content: bytes.Clone(c.Content), Signature: bytes.Clone(c.Signature)}
		}
		c := &checks[int(where)%len(checks)]
		var field *[]byte
		switch (where / 3) % 3 {
		case 0:
			field = &c.Key
		case 1:
			field = &c.Signature
		default:
			field = &c.Content
		}
		if int(at) < len(*field) {
			n := copy((*field)[at:], data)
			if len(data) > n && (where/9)%2 == 1 {
				*field = append(*field, data[n:]...) // a longer field
			}
		}
		first := -1
		for i, c := range checks {
			if s.Verify(c) != nil {
				first = i
				break
			}
		}
		bad, err := s.VerifyBatch(checks)
		if bad != first || (err == nil) != (first < 0) {
			t.Fatalf("batch reports %d (%v), one by one %d", bad, err, first)
		}
	})
}
