package message

import (
	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// GroupSecrets is what a Welcome encrypts to each new member
// (RFC 9420 §12.4.3.1). All of it is secret.
type GroupSecrets struct {
	JoinerSecret []byte
	// PathSecret is the optional<PathSecret>: nil when absent. A present
	// but empty path secret decodes as a non-nil empty slice.
	PathSecret []byte
	PSKs       []PreSharedKeyID
}

// MarshalMLS implements codec.Marshaler.
func (g *GroupSecrets) MarshalMLS(w *codec.Writer) {
	w.Opaque(g.JoinerSecret)
	w.Optional(g.PathSecret != nil)
	if g.PathSecret != nil {
		w.Opaque(g.PathSecret)
	}
	writeList(w, g.PSKs)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (g *GroupSecrets) UnmarshalMLS(r *codec.Reader) {
	g.JoinerSecret = r.Opaque("group_secrets.joiner_secret")
	g.PathSecret = nil
	if r.Optional("group_secrets.path_secret") {
		g.PathSecret = r.Opaque("group_secrets.path_secret.path_secret")
	}
	g.PSKs = readList[PreSharedKeyID](r, "group_secrets.psks")
}

// EncryptedGroupSecrets is a GroupSecrets encrypted to one new member,
// named by the KeyPackageRef of the KeyPackage it was encrypted to.
type EncryptedGroupSecrets struct {
	NewMember             []byte
	EncryptedGroupSecrets HPKECiphertext
}

// MarshalMLS implements codec.Marshaler.
func (e *EncryptedGroupSecrets) MarshalMLS(w *codec.Writer) {
	w.Opaque(e.NewMember)
	e.EncryptedGroupSecrets.MarshalMLS(w)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (e *EncryptedGroupSecrets) UnmarshalMLS(r *codec.Reader) {
	e.NewMember = r.Opaque("encrypted_group_secrets.new_member")
	e.EncryptedGroupSecrets.UnmarshalMLS(r)
}

// Welcome brings new members into a group (RFC 9420 §12.4.3.1).
type Welcome struct {
	CipherSuite        suite.ID
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

// MarshalMLS implements codec.Marshaler.
func (wl *Welcome) MarshalMLS(w *codec.Writer) {
	w.Uint16(uint16(wl.CipherSuite))
	writeList(w, wl.Secrets)
	w.Opaque(wl.EncryptedGroupInfo)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (wl *Welcome) UnmarshalMLS(r *codec.Reader) {
	wl.CipherSuite = suite.ID(r.Uint16("welcome.cipher_suite"))
	wl.Secrets = readList[EncryptedGroupSecrets](r, "welcome.secrets")
	wl.EncryptedGroupInfo = r.Opaque("welcome.encrypted_group_info")
}
