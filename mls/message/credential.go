package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// CredentialType is a value from the IANA "MLS Credential Types" registry.
type CredentialType uint16

// The credential types of RFC 9420 §17.5.
const (
	CredentialBasic CredentialType = 0x0001
	CredentialX509  CredentialType = 0x0002
)

// Credential binds an identity to a signature key (RFC 9420 §5.3). Identity
// is used by basic credentials, Certificates (DER, end-entity first) by
// x509 credentials.
//
// Unknown credential types are rejected with ErrUnknownCredentialType: the
// body of a credential carries no length, so an unknown one cannot be
// skipped, and §13.5 keeps GREASE values out of credential_type.
type Credential struct {
	Type         CredentialType
	Identity     []byte
	Certificates [][]byte
}

// BasicCredential returns a basic credential for identity.
func BasicCredential(identity []byte) Credential {
	return Credential{Type: CredentialBasic, Identity: identity}
}

// MarshalMLS implements codec.Marshaler.
func (c *Credential) MarshalMLS(w *codec.Writer) {
	w.Uint16(uint16(c.Type))
	switch c.Type {
	case CredentialBasic:
		w.Opaque(c.Identity)
	case CredentialX509:
		writeOpaques(w, c.Certificates)
	}
}

// UnmarshalMLS implements codec.Unmarshaler.
func (c *Credential) UnmarshalMLS(r *codec.Reader) {
	*c = Credential{Type: CredentialType(r.Uint16("credential.credential_type"))}
	switch c.Type {
	case CredentialBasic:
		c.Identity = r.Opaque("credential.identity")
	case CredentialX509:
		c.Certificates = readOpaques(r, "credential.certificates")
	default:
		r.Fail("credential.credential_type", fmt.Errorf("%w %d", ErrUnknownCredentialType, c.Type))
	}
}
