package suite

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
)

type cryptoBasicsCase struct {
	CipherSuite ID `json:"cipher_suite"`
	RefHash     struct {
		Label string      `json:"label"`
		Value vectors.Hex `json:"value"`
		Out   vectors.Hex `json:"out"`
	} `json:"ref_hash"`
	ExpandWithLabel struct {
		Secret  vectors.Hex `json:"secret"`
		Label   string      `json:"label"`
		Context vectors.Hex `json:"context"`
		Length  int         `json:"length"`
		Out     vectors.Hex `json:"out"`
	} `json:"expand_with_label"`
	DeriveSecret struct {
		Secret vectors.Hex `json:"secret"`
		Label  string      `json:"label"`
		Out    vectors.Hex `json:"out"`
	} `json:"derive_secret"`
	DeriveTreeSecret struct {
		Secret     vectors.Hex `json:"secret"`
		Label      string      `json:"label"`
		Generation uint32      `json:"generation"`
		Length     int         `json:"length"`
		Out        vectors.Hex `json:"out"`
	} `json:"derive_tree_secret"`
	SignWithLabel struct {
		Priv      vectors.Hex `json:"priv"`
		Pub       vectors.Hex `json:"pub"`
		Content   vectors.Hex `json:"content"`
		Label     string      `json:"label"`
		Signature vectors.Hex `json:"signature"`
	} `json:"sign_with_label"`
	EncryptWithLabel struct {
		Priv       vectors.Hex `json:"priv"`
		Pub        vectors.Hex `json:"pub"`
		Label      string      `json:"label"`
		Context    vectors.Hex `json:"context"`
		Plaintext  vectors.Hex `json:"plaintext"`
		KEMOutput  vectors.Hex `json:"kem_output"`
		Ciphertext vectors.Hex `json:"ciphertext"`
	} `json:"encrypt_with_label"`
}

func checkCryptoBasics(c *cryptoBasicsCase) error {
	s, err := Lookup(c.CipherSuite)
	if err != nil {
		return err
	}
	if got := s.RefHash(c.RefHash.Label, c.RefHash.Value); !bytes.Equal(got, c.RefHash.Out) {
		return fmt.Errorf("ref_hash = %x", got)
	}
	e := c.ExpandWithLabel
	if got := s.ExpandWithLabel(e.Secret, e.Label, e.Context, e.Length); !bytes.Equal(got, e.Out) {
		return fmt.Errorf("expand_with_label = %x", got)
	}
	if got := s.DeriveSecret(c.DeriveSecret.Secret, c.DeriveSecret.Label); !bytes.Equal(got, c.DeriveSecret.Out) {
		return fmt.Errorf("derive_secret = %x", got)
	}
	d := c.DeriveTreeSecret
	if got := s.DeriveTreeSecret(d.Secret, d.Label, d.Generation, d.Length); !bytes.Equal(got, d.Out) {
		return fmt.Errorf("derive_tree_secret = %x", got)
	}

	sw := c.SignWithLabel
	pub, err := s.NewSignaturePublicKey(sw.Pub)
	if err != nil {
		return err
	}
	if err := pub.VerifyWithLabel(sw.Label, sw.Content, sw.Signature); err != nil {
		return fmt.Errorf("verify vector signature: %w", err)
	}
	priv, err := s.NewSignaturePrivateKey(sw.Priv)
	if err != nil {
		return err
	}
	sig, err := priv.SignWithLabel(sw.Label, sw.Content)
	if err != nil {
		return err
	}
	if err := pub.VerifyWithLabel(sw.Label, sw.Content, sig); err != nil {
		return fmt.Errorf("verify own signature: %w", err)
	}
	if !priv.Public().Equal(pub) || !bytes.Equal(priv.Public().Bytes(), sw.Pub) {
		return fmt.Errorf("signature public key = %x", priv.Public().Bytes())
	}

	ew := c.EncryptWithLabel
	hpriv, err := s.NewHPKEPrivateKey(ew.Priv)
	if err != nil {
		return err
	}
	hpub, err := s.NewHPKEPublicKey(ew.Pub)
	if err != nil {
		return err
	}
	pt, err := hpriv.DecryptWithLabel(ew.Label, ew.Context, ew.KEMOutput, ew.Ciphertext)
	if err != nil || !bytes.Equal(pt, ew.Plaintext) {
		return fmt.Errorf("decrypt vector: %x, %v", pt, err)
	}
	kemOut, ct, err := hpub.EncryptWithLabel(ew.Label, ew.Context, ew.Plaintext)
	if err != nil {
		return err
	}
	pt, err = hpriv.DecryptWithLabel(ew.Label, ew.Context, kemOut, ct)
	if err != nil || !bytes.Equal(pt, ew.Plaintext) {
		return fmt.Errorf("decrypt own: %x, %v", pt, err)
	}
	if !hpriv.Public().Equal(hpub) || !bytes.Equal(hpriv.Bytes(), ew.Priv) {
		return fmt.Errorf("hpke public key = %x, private %x", hpriv.Public().Bytes(), hpriv.Bytes())
	}
	return nil
}

func TestCryptoBasicsVectors(t *testing.T) {
	vectors.Run(t, "crypto-basics.json", checkCryptoBasics,
		func(c *cryptoBasicsCase) string { return fmt.Sprintf("suite %d", c.CipherSuite) })
}

func TestLookupRejectsUnknownSuites(t *testing.T) {
	for _, id := range []ID{0, 8, 0x0a0a, 0xffff} {
		if _, err := Lookup(id); !errors.Is(err, ErrUnsupportedSuite) {
			t.Errorf("Lookup(%d) = %v, want ErrUnsupportedSuite", id, err)
		}
	}
	if n := len(All()); n != 7 {
		t.Fatalf("All() has %d suites, want 7", n)
	}
}

func TestRejections(t *testing.T) {
	for _, s := range All() {
		t.Run(s.String(), func(t *testing.T) {
			priv, err := s.GenerateSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			pub := priv.Public()
			sig, err := priv.SignWithLabel("L", []byte("content"))
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.VerifyWithLabel("L", []byte("content!"), sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("modified content: %v", err)
			}
			if err := pub.VerifyWithLabel("M", []byte("content"), sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("other label: %v", err)
			}
			other, _ := s.GenerateSignatureKey()
			if err := other.Public().VerifyWithLabel("L", []byte("content"), sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("other key: %v", err)
			}

			hpriv, err := s.GenerateHPKEKey()
			if err != nil {
				t.Fatal(err)
			}
			enc, ct, err := hpriv.Public().EncryptWithLabel("L", []byte("ctx"), []byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			ct[0] ^= 1
			if _, err := hpriv.DecryptWithLabel("L", []byte("ctx"), enc, ct); !errors.Is(err, ErrDecrypt) {
				t.Errorf("tampered ciphertext: %v", err)
			}
			ct[0] ^= 1
			if _, err := hpriv.DecryptWithLabel("L", []byte("other"), enc, ct); !errors.Is(err, ErrDecrypt) {
				t.Errorf("other context: %v", err)
			}
			hother, _ := s.GenerateHPKEKey()
			if _, err := hother.DecryptWithLabel("L", []byte("ctx"), enc, ct); !errors.Is(err, ErrDecrypt) {
				t.Errorf("other key: %v", err)
			}

			key := make([]byte, s.KeySize())
			nonce := make([]byte, s.NonceSize())
			sealed, err := s.Seal(key, nonce, []byte("aad"), []byte("pt"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Open(key, nonce, []byte("aaD"), sealed); !errors.Is(err, ErrDecrypt) {
				t.Errorf("wrong aad: %v", err)
			}
		})
	}
}

func BenchmarkHPKE(b *testing.B) {
	for _, s := range All() {
		priv, err := s.GenerateHPKEKey()
		if err != nil {
			b.Fatal(err)
		}
		pub := priv.Public()
		pt := make([]byte, 64)
		b.Run(fmt.Sprintf("suite=%d/seal", s.ID()), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := pub.EncryptWithLabel("UpdatePathNode", nil, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
		enc, ct, _ := pub.EncryptWithLabel("UpdatePathNode", nil, pt)
		b.Run(fmt.Sprintf("suite=%d/open", s.ID()), func(b *testing.B) {
			for b.Loop() {
				if _, err := priv.DecryptWithLabel("UpdatePathNode", nil, enc, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSignature(b *testing.B) {
	for _, s := range All() {
		priv, err := s.GenerateSignatureKey()
		if err != nil {
			b.Fatal(err)
		}
		msg := make([]byte, 256)
		b.Run(fmt.Sprintf("suite=%d/sign", s.ID()), func(b *testing.B) {
			for b.Loop() {
				if _, err := priv.SignWithLabel("LeafNodeTBS", msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		sig, _ := priv.SignWithLabel("LeafNodeTBS", msg)
		b.Run(fmt.Sprintf("suite=%d/verify", s.ID()), func(b *testing.B) {
			for b.Loop() {
				if err := priv.Public().VerifyWithLabel("LeafNodeTBS", msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestECDSAShortScalarIsPadded(t *testing.T) {
	s, _ := Lookup(P521AES256GCMSHA512P521)
	for {
		priv, err := s.GenerateSignatureKey()
		if err != nil {
			t.Fatal(err)
		}
		enc := priv.Bytes()
		if enc[0] != 0 {
			continue // want a key whose encoding starts with a zero byte
		}
		short, err := s.NewSignaturePrivateKey(enc[1:])
		if err != nil {
			t.Fatalf("parse unpadded scalar: %v", err)
		}
		if !short.Equal(priv) || !short.Public().Equal(priv.Public()) {
			t.Fatal("unpadded scalar parsed to another key")
		}
		sig, err := short.SignWithLabel("L", []byte("m"))
		if err != nil {
			t.Fatalf("sign with unpadded scalar: %v", err)
		}
		if err := priv.Public().VerifyWithLabel("L", []byte("m"), sig); err != nil {
			t.Fatal(err)
		}
		return
	}
}
