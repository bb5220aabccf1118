package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Signed JSON signs the canonical bytes themselves, not MLS's labelled
// SignContent, so the credential key signs its device keys object with
// the bare algorithm: Ed25519 for suites 1 and 3, ECDSA P-256 with
// SHA-256 (DER, as MLS encodes it) for suite 2.

var errBadJSONSignature = errors.New("signature does not verify")

// signJSON signs msg with the device's MLS signature key.
func signJSON(k *suite.SignaturePrivateKey, msg []byte) ([]byte, error) {
	switch k.Suite().ID() {
	case suite.X25519AES128GCMSHA256Ed25519, suite.X25519ChaCha20Poly1305SHA256Ed25519:
		seed := k.Bytes()
		if len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("ed25519 key of %d bytes", len(seed))
		}
		return ed25519.Sign(ed25519.NewKeyFromSeed(seed), msg), nil
	case suite.P256AES128GCMSHA256P256:
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), k.Bytes())
		if err != nil {
			return nil, fmt.Errorf("p256 key: %w", err)
		}
		h := sha256.Sum256(msg)
		return ecdsa.SignASN1(rand.Reader, priv, h[:])
	}
	return nil, fmt.Errorf("%w: %s", suite.ErrUnsupportedSuite, k.Suite())
}

// verifyJSON verifies a signature made by signJSON with the public key
// pub, encoded as a LeafNode's signature_key is.
func verifyJSON(s suite.ID, pub, msg, sig []byte) error {
	switch s {
	case suite.X25519AES128GCMSHA256Ed25519, suite.X25519ChaCha20Poly1305SHA256Ed25519:
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("ed25519 key of %d bytes", len(pub))
		}
		if !ed25519.Verify(ed25519.PublicKey(pub), msg, sig) {
			return errBadJSONSignature
		}
		return nil
	case suite.P256AES128GCMSHA256P256:
		k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub)
		if err != nil {
			return fmt.Errorf("p256 key: %w", err)
		}
		h := sha256.Sum256(msg)
		if !ecdsa.VerifyASN1(k, h[:], sig) {
			return errBadJSONSignature
		}
		return nil
	}
	return fmt.Errorf("%w: 0x%04x", suite.ErrUnsupportedSuite, uint16(s))
}

// usesEd25519 reports whether suite s's credential key is an Ed25519 key,
// which our devices also publish as their plain ed25519 device key.
func usesEd25519(s suite.ID) bool {
	return s == suite.X25519AES128GCMSHA256Ed25519 || s == suite.X25519ChaCha20Poly1305SHA256Ed25519
}
