package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Capabilities lists what a client supports (RFC 9420 §7.2). The lists may
// hold GREASE and other unknown values; they decode unchanged.
type Capabilities struct {
	Versions     []ProtocolVersion
	CipherSuites []suite.ID
	Extensions   []ExtensionType
	Proposals    []ProposalType
	Credentials  []CredentialType
}

// MarshalMLS implements codec.Marshaler.
func (c *Capabilities) MarshalMLS(w *codec.Writer) {
	writeUint16s(w, c.Versions)
	writeUint16s(w, c.CipherSuites)
	writeUint16s(w, c.Extensions)
	writeUint16s(w, c.Proposals)
	writeUint16s(w, c.Credentials)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (c *Capabilities) UnmarshalMLS(r *codec.Reader) {
	c.Versions = readUint16s[ProtocolVersion](r, "capabilities.versions")
	c.CipherSuites = readUint16s[suite.ID](r, "capabilities.cipher_suites")
	c.Extensions = readUint16s[ExtensionType](r, "capabilities.extensions")
	c.Proposals = readUint16s[ProposalType](r, "capabilities.proposals")
	c.Credentials = readUint16s[CredentialType](r, "capabilities.credentials")
}

// Lifetime bounds the validity of a KeyPackage's leaf, in seconds since
// the Unix epoch (RFC 9420 §7.2).
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

// LeafNodeSource says how a LeafNode came to be (RFC 9420 §7.2).
type LeafNodeSource uint8

// The leaf node sources of RFC 9420 §7.2.
const (
	LeafNodeSourceKeyPackage LeafNodeSource = 1
	LeafNodeSourceUpdate     LeafNodeSource = 2
	LeafNodeSourceCommit     LeafNodeSource = 3
)

// LeafNode describes one member (RFC 9420 §7.2). Source selects the extra
// field on the wire: Lifetime for key_package, ParentHash for commit,
// nothing for update.
type LeafNode struct {
	EncryptionKey []byte
	SignatureKey  []byte
	Credential    Credential
	Capabilities  Capabilities
	Source        LeafNodeSource
	Lifetime      Lifetime // key_package only
	ParentHash    []byte   // commit only
	Extensions    []Extension
	Signature     []byte
}

// MarshalMLS implements codec.Marshaler.
func (l *LeafNode) MarshalMLS(w *codec.Writer) {
	l.marshalContent(w)
	w.Opaque(l.Signature)
}

func (l *LeafNode) marshalContent(w *codec.Writer) {
	w.Opaque(l.EncryptionKey)
	w.Opaque(l.SignatureKey)
	l.Credential.MarshalMLS(w)
	l.Capabilities.MarshalMLS(w)
	w.Uint8(uint8(l.Source))
	switch l.Source {
	case LeafNodeSourceKeyPackage:
		w.Uint64(l.Lifetime.NotBefore)
		w.Uint64(l.Lifetime.NotAfter)
	case LeafNodeSourceCommit:
		w.Opaque(l.ParentHash)
	}
	marshalExtensions(w, l.Extensions)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (l *LeafNode) UnmarshalMLS(r *codec.Reader) {
	*l = LeafNode{}
	l.EncryptionKey = r.Opaque("leaf_node.encryption_key")
	l.SignatureKey = r.Opaque("leaf_node.signature_key")
	l.Credential.UnmarshalMLS(r)
	l.Capabilities.UnmarshalMLS(r)
	l.Source = LeafNodeSource(r.Uint8("leaf_node.leaf_node_source"))
	switch l.Source {
	case LeafNodeSourceKeyPackage:
		l.Lifetime.NotBefore = r.Uint64("leaf_node.lifetime.not_before")
		l.Lifetime.NotAfter = r.Uint64("leaf_node.lifetime.not_after")
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		l.ParentHash = r.Opaque("leaf_node.parent_hash")
	default:
		r.Fail("leaf_node.leaf_node_source", fmt.Errorf("%w %d", ErrUnknownLeafNodeSource, l.Source))
		return
	}
	l.Extensions = unmarshalExtensions(r, "leaf_node.extensions")
	l.Signature = r.Opaque("leaf_node.signature")
}

// TBS returns the LeafNodeTBS encoding that Signature signs with the label
// "LeafNodeTBS" (RFC 9420 §7.2). groupID and leafIndex are part of it only
// for the update and commit sources and are ignored for key_package.
func (l *LeafNode) TBS(groupID []byte, leafIndex uint32) []byte {
	var w codec.Writer
	l.marshalContent(&w)
	switch l.Source {
	case LeafNodeSourceUpdate, LeafNodeSourceCommit:
		w.Opaque(groupID)
		w.Uint32(leafIndex)
	}
	return w.Bytes()
}
