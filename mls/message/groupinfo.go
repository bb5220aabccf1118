package message

import "github.com/mls-appservice/mls-appservice/mls/codec"

// GroupInfo describes a group to a joiner (RFC 9420 §12.4.3).
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      []Extension
	ConfirmationTag []byte
	Signer          uint32 // leaf index of the signer
	Signature       []byte
}

// MarshalMLS implements codec.Marshaler.
func (g *GroupInfo) MarshalMLS(w *codec.Writer) {
	g.marshalTBS(w)
	w.Opaque(g.Signature)
}

func (g *GroupInfo) marshalTBS(w *codec.Writer) {
	g.GroupContext.MarshalMLS(w)
	marshalExtensions(w, g.Extensions)
	w.Opaque(g.ConfirmationTag)
	w.Uint32(g.Signer)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (g *GroupInfo) UnmarshalMLS(r *codec.Reader) {
	g.GroupContext.UnmarshalMLS(r)
	g.Extensions = unmarshalExtensions(r, "group_info.extensions")
	g.ConfirmationTag = r.Opaque("group_info.confirmation_tag")
	g.Signer = r.Uint32("group_info.signer")
	g.Signature = r.Opaque("group_info.signature")
}

// TBS returns the GroupInfoTBS encoding that Signature signs with the
// label "GroupInfoTBS": every field but the signature.
func (g *GroupInfo) TBS() []byte {
	var w codec.Writer
	g.marshalTBS(&w)
	return w.Bytes()
}
