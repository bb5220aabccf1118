package group

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// KeyPackageBundle is a KeyPackage together with the private keys that its
// owner keeps until the KeyPackage is used (RFC 9420 §10): the init key
// opens the Welcome that adds it, the encryption key is the new leaf's
// HPKE key, and the signature key is the client's, which it signs the
// KeyPackage and later all its messages with.
type KeyPackageBundle struct {
	KeyPackage message.KeyPackage
	// InitKey is the private half of KeyPackage.InitKey.
	InitKey *suite.HPKEPrivateKey
	// EncryptionKey is the private half of KeyPackage.LeafNode.EncryptionKey.
	EncryptionKey *suite.HPKEPrivateKey
	// SignatureKey is the private half of KeyPackage.LeafNode.SignatureKey.
	// Many KeyPackages of one client usually share it.
	SignatureKey *suite.SignaturePrivateKey
}

// KeyPackageOptions customise NewKeyPackage; the zero value gives a
// KeyPackage valid for 90 days that supports only the suite and the
// credential's type.
type KeyPackageOptions struct {
	// Capabilities, if set, replaces the default capabilities. The suite,
	// MLS 1.0 and the credential's type are added when missing.
	Capabilities *message.Capabilities
	// Lifetime, if set, replaces the default validity period.
	Lifetime *message.Lifetime
	// Extensions are the KeyPackage's extensions.
	Extensions []message.Extension
	// LeafExtensions are the LeafNode's extensions.
	LeafExtensions []message.Extension
}

// NewKeyPackage makes a fresh KeyPackage, with new init and encryption
// keys, for a client with credential cred and signature key signatureKey,
// in the signature key's cipher suite. o may be nil.
func NewKeyPackage(cred message.Credential, signatureKey *suite.SignaturePrivateKey, o *KeyPackageOptions) (*KeyPackageBundle, error) {
	template, err := NewKeyPackageTemplate(cred, signatureKey, o)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, signatureKey.Suite().HashSize())
	defer clear(secret)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("key package: %w", err)
	}
	return DeriveKeyPackage(template, secret, signatureKey)
}

// NewKeyPackageTemplate returns the fields that NewKeyPackage would give a
// KeyPackage of cred and signatureKey, without its keys and signatures:
// what a batch of KeyPackages derived by DeriveKeyPackage shares. o may be
// nil.
func NewKeyPackageTemplate(cred message.Credential, signatureKey *suite.SignaturePrivateKey, o *KeyPackageOptions) (*message.KeyPackage, error) {
	if signatureKey == nil {
		return nil, errors.New("key package: no signature key")
	}
	id := signatureKey.Suite().ID()
	if o == nil {
		o = &KeyPackageOptions{}
	}
	caps := message.Capabilities{}
	if o.Capabilities != nil {
		caps = cloneCapabilities(o.Capabilities)
	}
	if !slices.Contains(caps.Versions, message.MLS10) {
		caps.Versions = append(caps.Versions, message.MLS10)
	}
	if !slices.Contains(caps.CipherSuites, id) {
		caps.CipherSuites = append(caps.CipherSuites, id)
	}
	if !slices.Contains(caps.Credentials, cred.Type) {
		caps.Credentials = append(caps.Credentials, cred.Type)
	}
	fill(&caps)
	lifetime := message.Lifetime{NotBefore: uint64(time.Now().Add(-time.Hour).Unix()), NotAfter: uint64(time.Now().Add(90 * 24 * time.Hour).Unix())}
	if o.Lifetime != nil {
		lifetime = *o.Lifetime
	}
	return &message.KeyPackage{
		Version:     message.MLS10,
		CipherSuite: id,
		InitKey:     []byte{},
		LeafNode: message.LeafNode{
			EncryptionKey: []byte{},
			SignatureKey:  []byte{},
			Credential:    cred,
			Capabilities:  caps,
			Source:        message.LeafNodeSourceKeyPackage,
			Lifetime:      lifetime,
			ParentHash:    []byte{},
			Extensions:    nonNil(o.LeafExtensions),
			Signature:     []byte{},
		},
		Extensions: nonNil(o.Extensions),
		Signature:  []byte{},
	}, nil
}

// DeriveKeyPackage makes the KeyPackage with template's fields whose init
// and encryption keys are derived from secret (KDF.Nh bytes):
//
//	init_key       = DeriveKeyPair(ExpandWithLabel(secret, "key package init", "", KDF.Nh))
//	encryption_key = DeriveKeyPair(ExpandWithLabel(secret, "key package encryption", "", KDF.Nh))
//
// signed by signatureKey, whose public key it carries. Signing is
// deterministic (package suite), so one template, secret and signature
// key always give the same KeyPackage: a client can keep the secret, or
// a way to derive it, instead of the KeyPackage and its private keys, and
// derive both again when a Welcome names its KeyPackageRef. template's
// keys and signatures are ignored, and it is not modified.
func DeriveKeyPackage(template *message.KeyPackage, secret []byte, signatureKey *suite.SignaturePrivateKey) (*KeyPackageBundle, error) {
	if signatureKey == nil {
		return nil, errors.New("key package: no signature key")
	}
	s := signatureKey.Suite()
	if template.CipherSuite != s.ID() {
		return nil, fmt.Errorf("key package: template of suite %d, signature key of suite %d", template.CipherSuite, s.ID())
	}
	if len(secret) != s.HashSize() {
		return nil, fmt.Errorf("key package: secret of %d bytes, want %d", len(secret), s.HashSize())
	}
	derive := func(label string) (*suite.HPKEPrivateKey, error) {
		ikm := s.ExpandWithLabel(secret, label, nil, s.HashSize())
		defer clear(ikm)
		return s.DeriveHPKEKey(ikm)
	}
	initKey, err := derive("key package init")
	if err != nil {
		return nil, fmt.Errorf("key package: %w", err)
	}
	encKey, err := derive("key package encryption")
	if err != nil {
		return nil, fmt.Errorf("key package: %w", err)
	}
	kp := *template
	kp.InitKey = initKey.Public().Bytes()
	kp.LeafNode.EncryptionKey = encKey.Public().Bytes()
	kp.LeafNode.SignatureKey = signatureKey.Public().Bytes()
	kp.LeafNode.Signature, err = signatureKey.SignWithLabel("LeafNodeTBS", kp.LeafNode.TBS(nil, 0))
	if err != nil {
		return nil, fmt.Errorf("key package: %w", err)
	}
	kp.Signature, err = signatureKey.SignWithLabel("KeyPackageTBS", kp.TBS())
	if err != nil {
		return nil, fmt.Errorf("key package: %w", err)
	}
	return &KeyPackageBundle{KeyPackage: kp, InitKey: initKey, EncryptionKey: encKey, SignatureKey: signatureKey}, nil
}

// Check reports whether the bundle's private keys are of the KeyPackage's
// suite and match its public keys. It does not validate the KeyPackage
// itself (tree.ValidateKeyPackage does).
func (b *KeyPackageBundle) Check() error {
	s, err := suite.Lookup(b.KeyPackage.CipherSuite)
	if err != nil {
		return fmt.Errorf("%w: key package: %w", ErrInvalidState, err)
	}
	for _, c := range []struct {
		name     string
		ok       bool
		pub, own []byte
	}{
		{"init key", b.InitKey != nil && b.InitKey.Suite() == s, b.KeyPackage.InitKey, keyBytes(b.InitKey)},
		{"encryption key", b.EncryptionKey != nil && b.EncryptionKey.Suite() == s, b.KeyPackage.LeafNode.EncryptionKey, keyBytes(b.EncryptionKey)},
		{"signature key", b.SignatureKey != nil && b.SignatureKey.Suite() == s, b.KeyPackage.LeafNode.SignatureKey, sigKeyBytes(b.SignatureKey)},
	} {
		if !c.ok || !bytes.Equal(c.pub, c.own) {
			return fmt.Errorf("%w: key package bundle: %s does not match the key package", ErrInvalidState, c.name)
		}
	}
	return nil
}

func keyBytes(k *suite.HPKEPrivateKey) []byte {
	if k == nil {
		return nil
	}
	return k.Public().Bytes()
}

func sigKeyBytes(k *suite.SignaturePrivateKey) []byte {
	if k == nil {
		return nil
	}
	return k.Public().Bytes()
}

// keyPackageBundleVersion is the storage format of a KeyPackageBundle:
//
//	struct {
//	    uint8 version = 1;
//	    CipherSuite cipher_suite;
//	    KeyPackage key_package;
//	    opaque init_priv<V>;
//	    opaque encryption_priv<V>;
//	} StoredKeyPackageBundle;
//
// The signature key is not part of it: a client keeps one for many
// KeyPackages, and stores it once.
const keyPackageBundleVersion = 1

// MarshalBinary encodes the KeyPackage and its init and encryption private
// keys for storage; the result is secret. The signature key is left out
// (UnmarshalKeyPackageBundle takes it back).
func (b *KeyPackageBundle) MarshalBinary() ([]byte, error) {
	if err := b.Check(); err != nil {
		return nil, err
	}
	w := codec.NewWriter(1024)
	stored.WriteHeader(w, keyPackageBundleVersion, b.InitKey.Suite().ID())
	b.KeyPackage.MarshalMLS(w)
	w.Opaque(b.InitKey.Bytes())
	w.Opaque(b.EncryptionKey.Bytes())
	return w.Bytes(), nil
}

// UnmarshalKeyPackageBundle decodes a bundle encoded by MarshalBinary and
// completes it with signatureKey, which must be the KeyPackage's. It
// checks that every private key matches the KeyPackage (Check); errors
// match ErrInvalidState.
func UnmarshalKeyPackageBundle(data []byte, signatureKey *suite.SignaturePrivateKey) (*KeyPackageBundle, error) {
	r := codec.NewReader(data)
	s := stored.ReadHeader(r, "key_package_bundle", keyPackageBundleVersion, ErrInvalidState)
	b := &KeyPackageBundle{SignatureKey: signatureKey}
	b.KeyPackage.UnmarshalMLS(r)
	initPriv := r.Opaque("key_package_bundle.init_priv")
	encPriv := r.Opaque("key_package_bundle.encryption_priv")
	if err := r.Finish("key_package_bundle"); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if b.KeyPackage.CipherSuite != s.ID() {
		return nil, fmt.Errorf("%w: key package of suite %d in a bundle of suite %d", ErrInvalidState, b.KeyPackage.CipherSuite, s.ID())
	}
	var err error
	if b.InitKey, err = s.NewHPKEPrivateKey(initPriv); err != nil {
		return nil, fmt.Errorf("%w: init key: %w", ErrInvalidState, err)
	}
	if b.EncryptionKey, err = s.NewHPKEPrivateKey(encPriv); err != nil {
		return nil, fmt.Errorf("%w: encryption key: %w", ErrInvalidState, err)
	}
	if err := b.Check(); err != nil {
		return nil, err
	}
	return b, nil
}

func cloneCapabilities(c *message.Capabilities) message.Capabilities {
	return message.Capabilities{
		Versions:     slices.Clone(c.Versions),
		CipherSuites: slices.Clone(c.CipherSuites),
		Extensions:   slices.Clone(c.Extensions),
		Proposals:    slices.Clone(c.Proposals),
		Credentials:  slices.Clone(c.Credentials),
	}
}

// fill makes the capability lists non-nil so that encodings round-trip.
func fill(c *message.Capabilities) {
	if c.Extensions == nil {
		c.Extensions = []message.ExtensionType{}
	}
	if c.Proposals == nil {
		c.Proposals = []message.ProposalType{}
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
