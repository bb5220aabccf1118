package message

import (
	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// KeyPackage is a client's signed offer to be added to a group
// (RFC 9420 §10).
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite suite.ID
	InitKey     []byte
	LeafNode    LeafNode
	Extensions  []Extension
	Signature   []byte
}

// MarshalMLS implements codec.Marshaler.
func (k *KeyPackage) MarshalMLS(w *codec.Writer) {
	k.marshalTBS(w)
	w.Opaque(k.Signature)
}

func (k *KeyPackage) marshalTBS(w *codec.Writer) {
	w.Uint16(uint16(k.Version))
	w.Uint16(uint16(k.CipherSuite))
	w.Opaque(k.InitKey)
	k.LeafNode.MarshalMLS(w)
	marshalExtensions(w, k.Extensions)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (k *KeyPackage) UnmarshalMLS(r *codec.Reader) {
	k.Version = ProtocolVersion(r.Uint16("key_package.version"))
	k.CipherSuite = suite.ID(r.Uint16("key_package.cipher_suite"))
	k.InitKey = r.Opaque("key_package.init_key")
	k.LeafNode.UnmarshalMLS(r)
	k.Extensions = unmarshalExtensions(r, "key_package.extensions")
	k.Signature = r.Opaque("key_package.signature")
}

// TBS returns the KeyPackageTBS encoding that Signature signs with the
// label "KeyPackageTBS": every field but the signature.
func (k *KeyPackage) TBS() []byte {
	var w codec.Writer
	k.marshalTBS(&w)
	return w.Bytes()
}

// Ref returns the KeyPackageRef of k under s (RFC 9420 §5.2), the name by
// which a Welcome addresses the new member.
func (k *KeyPackage) Ref(s *suite.Suite) []byte {
	return s.RefHash("MLS 1.0 KeyPackage Reference", codec.Marshal(k))
}
