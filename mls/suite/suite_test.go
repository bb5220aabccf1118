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
	if err := s.VerifyWithLabel(sw.Pub, sw.Label, sw.Content, sw.Signature); err != nil {
		return fmt.Errorf("verify vector signature: %w", err)
	}
	sig, err := s.SignWithLabel(sw.Priv, sw.Label, sw.Content)
	if err != nil {
		return err
	}
	if err := s.VerifyWithLabel(sw.Pub, sw.Label, sw.Content, sig); err != nil {
		return fmt.Errorf("verify own signature: %w", err)
	}
	if pub, err := s.SignaturePublicKey(sw.Priv); err != nil || !bytes.Equal(pub, sw.Pub) {
		return fmt.Errorf("signature public key = %x, %v", pub, err)
	}

	ew := c.EncryptWithLabel
	pt, err := s.DecryptWithLabel(ew.Priv, ew.Label, ew.Context, ew.KEMOutput, ew.Ciphertext)
	if err != nil || !bytes.Equal(pt, ew.Plaintext) {
		return fmt.Errorf("decrypt vector: %x, %v", pt, err)
	}
	kemOut, ct, err := s.EncryptWithLabel(ew.Pub, ew.Label, ew.Context, ew.Plaintext)
	if err != nil {
		return err
	}
	pt, err = s.DecryptWithLabel(ew.Priv, ew.Label, ew.Context, kemOut, ct)
	if err != nil || !bytes.Equal(pt, ew.Plaintext) {
		return fmt.Errorf("decrypt own: %x, %v", pt, err)
	}
	if pub, err := s.HPKEPublicKey(ew.Priv); err != nil || !bytes.Equal(pub, ew.Pub) {
		return fmt.Errorf("hpke public key = %x, %v", pub, err)
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
			priv, pub, err := s.GenerateSignatureKeyPair()
			if err != nil {
				t.Fatal(err)
			}
			sig, err := s.SignWithLabel(priv, "L", []byte("content"))
			if err != nil {
				t.Fatal(err)
			}
			if err := s.VerifyWithLabel(pub, "L", []byte("content!"), sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("modified content: %v", err)
			}
			if err := s.VerifyWithLabel(pub, "M", []byte("content"), sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("other label: %v", err)
			}

			hpriv, hpub, err := s.GenerateKeyPair()
			if err != nil {
				t.Fatal(err)
			}
			enc, ct, err := s.EncryptWithLabel(hpub, "L", []byte("ctx"), []byte("secret"))
			if err != nil {
				t.Fatal(err)
			}
			ct[0] ^= 1
			if _, err := s.DecryptWithLabel(hpriv, "L", []byte("ctx"), enc, ct); !errors.Is(err, ErrDecrypt) {
				t.Errorf("tampered ciphertext: %v", err)
			}
			ct[0] ^= 1
			if _, err := s.DecryptWithLabel(hpriv, "L", []byte("other"), enc, ct); !errors.Is(err, ErrDecrypt) {
				t.Errorf("other context: %v", err)
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
		priv, pub, err := s.GenerateKeyPair()
		if err != nil {
			b.Fatal(err)
		}
		pt := make([]byte, 64)
		b.Run(fmt.Sprintf("suite=%d/seal", s.ID()), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := s.EncryptWithLabel(pub, "UpdatePathNode", nil, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
		enc, ct, _ := s.EncryptWithLabel(pub, "UpdatePathNode", nil, pt)
		b.Run(fmt.Sprintf("suite=%d/open", s.ID()), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.DecryptWithLabel(priv, "UpdatePathNode", nil, enc, ct); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSignature(b *testing.B) {
	for _, s := range All() {
		priv, pub, err := s.GenerateSignatureKeyPair()
		if err != nil {
			b.Fatal(err)
		}
		msg := make([]byte, 256)
		b.Run(fmt.Sprintf("suite=%d/sign", s.ID()), func(b *testing.B) {
			for b.Loop() {
				if _, err := s.SignWithLabel(priv, "LeafNodeTBS", msg); err != nil {
					b.Fatal(err)
				}
			}
		})
		sig, _ := s.SignWithLabel(priv, "LeafNodeTBS", msg)
		b.Run(fmt.Sprintf("suite=%d/verify", s.ID()), func(b *testing.B) {
			for b.Loop() {
				if err := s.VerifyWithLabel(pub, "LeafNodeTBS", msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestECDSAShortScalarIsPadded(t *testing.T) {
	s, _ := Lookup(P521AES256GCMSHA512P521)
	for {
		priv, pub, err := s.GenerateSignatureKeyPair()
		if err != nil {
			t.Fatal(err)
		}
		if priv[0] != 0 {
			continue // want a key whose encoding starts with a zero byte
		}
		sig, err := s.SignWithLabel(priv[1:], "L", []byte("m"))
		if err != nil {
			t.Fatalf("sign with unpadded scalar: %v", err)
		}
		if err := s.VerifyWithLabel(pub, "L", []byte("m"), sig); err != nil {
			t.Fatal(err)
		}
		return
	}
}
