package group

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// KeyPackageBundle is a KeyPackage together with the private keys that its
// owner keeps: the init key (to open a Welcome), the leaf's encryption key
// and the signature key.
type KeyPackageBundle struct {
	KeyPackage     message.KeyPackage
	InitPriv       []byte
	EncryptionPriv []byte
	SignaturePriv  []byte
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

// NewKeyPackage makes a fresh KeyPackage for a client with credential cred
// and signature key signaturePriv, in suite id.
func NewKeyPackage(id suite.ID, cred message.Credential, signaturePriv []byte, o *KeyPackageOptions) (*KeyPackageBundle, error) {
	s, err := suite.Lookup(id)
	if err != nil {
		return nil, err
	}
	if o == nil {
		o = &KeyPackageOptions{}
	}
	sigPub, err := s.SignaturePublicKey(signaturePriv)
	if err != nil {
		return nil, fmt.Errorf("key package: signature key: %w", err)
	}
	initPriv, initPub, err := s.GenerateKeyPair()
	if err != nil {
		return nil, err
	}
	encPriv, encPub, err := s.GenerateKeyPair()
	if err != nil {
		return nil, err
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
	kp := message.KeyPackage{
		Version:     message.MLS10,
		CipherSuite: id,
		InitKey:     initPub,
		LeafNode: message.LeafNode{
			EncryptionKey: encPub,
			SignatureKey:  sigPub,
			Credential:    cred,
			Capabilities:  caps,
			Source:        message.LeafNodeSourceKeyPackage,
			Lifetime:      lifetime,
			ParentHash:    []byte{},
			Extensions:    nonNil(o.LeafExtensions),
		},
		Extensions: nonNil(o.Extensions),
	}
	kp.LeafNode.Signature, err = s.SignWithLabel(signaturePriv, "LeafNodeTBS", kp.LeafNode.TBS(nil, 0))
	if err != nil {
		return nil, err
	}
	kp.Signature, err = s.SignWithLabel(signaturePriv, "KeyPackageTBS", kp.TBS())
	if err != nil {
		return nil, err
	}
	return &KeyPackageBundle{KeyPackage: kp, InitPriv: initPriv, EncryptionPriv: encPriv, SignaturePriv: bytes.Clone(signaturePriv)}, nil
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
