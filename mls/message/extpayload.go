package message

import "github.com/mls-appservice/mls-appservice/mls/codec"

// The payloads of the RFC 9420 extensions whose extension_data has a
// defined structure. Decode one from Extension.Data with codec.Unmarshal.
// The ratchet_tree extension's payload is RatchetTree.

// ApplicationID is the payload of the application_id extension (§5.3.3).
type ApplicationID struct {
	ID []byte
}

// MarshalMLS implements codec.Marshaler.
func (a *ApplicationID) MarshalMLS(w *codec.Writer) { w.Opaque(a.ID) }

// UnmarshalMLS implements codec.Unmarshaler.
func (a *ApplicationID) UnmarshalMLS(r *codec.Reader) {
	a.ID = r.Opaque("application_id.application_id")
}

// RequiredCapabilities is the payload of the required_capabilities group
// context extension (§11.1).
type RequiredCapabilities struct {
	ExtensionTypes  []ExtensionType
	ProposalTypes   []ProposalType
	CredentialTypes []CredentialType
}

// MarshalMLS implements codec.Marshaler.
func (rc *RequiredCapabilities) MarshalMLS(w *codec.Writer) {
	writeUint16s(w, rc.ExtensionTypes)
	writeUint16s(w, rc.ProposalTypes)
	writeUint16s(w, rc.CredentialTypes)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (rc *RequiredCapabilities) UnmarshalMLS(r *codec.Reader) {
	rc.ExtensionTypes = readUint16s[ExtensionType](r, "required_capabilities.extension_types")
	rc.ProposalTypes = readUint16s[ProposalType](r, "required_capabilities.proposal_types")
	rc.CredentialTypes = readUint16s[CredentialType](r, "required_capabilities.credential_types")
}

// ExternalPub is the payload of the external_pub GroupInfo extension
// (§12.4.3.2): the HPKE key an external joiner encrypts to.
type ExternalPub struct {
	PublicKey []byte
}

// MarshalMLS implements codec.Marshaler.
func (e *ExternalPub) MarshalMLS(w *codec.Writer) { w.Opaque(e.PublicKey) }

// UnmarshalMLS implements codec.Unmarshaler.
func (e *ExternalPub) UnmarshalMLS(r *codec.Reader) {
	e.PublicKey = r.Opaque("external_pub.external_pub")
}

// ExternalSender is one entry of the external_senders extension (§12.1.8.1).
type ExternalSender struct {
	SignatureKey []byte
	Credential   Credential
}

// MarshalMLS implements codec.Marshaler.
func (e *ExternalSender) MarshalMLS(w *codec.Writer) {
	w.Opaque(e.SignatureKey)
	e.Credential.MarshalMLS(w)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (e *ExternalSender) UnmarshalMLS(r *codec.Reader) {
	e.SignatureKey = r.Opaque("external_sender.signature_key")
	e.Credential.UnmarshalMLS(r)
}

// ExternalSenders is the payload of the external_senders group context
// extension: ExternalSender external_senders<V>. Sender.SenderIndex
// indexes it.
type ExternalSenders []ExternalSender

// MarshalMLS implements codec.Marshaler.
func (e ExternalSenders) MarshalMLS(w *codec.Writer) { writeList(w, e) }

// UnmarshalMLS implements codec.Unmarshaler.
func (e *ExternalSenders) UnmarshalMLS(r *codec.Reader) {
	*e = readList[ExternalSender](r, "external_senders")
}
