package message

import (
	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// ProtocolVersion is the MLS protocol version (RFC 9420 §6).
type ProtocolVersion uint16

// MLS10 is the only protocol version RFC 9420 defines.
const MLS10 ProtocolVersion = 1

// GroupContext summarises the state of a group in one epoch (RFC 9420 §8.1).
type GroupContext struct {
	Version                 ProtocolVersion
	CipherSuite             suite.ID
	GroupID                 []byte
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              []Extension
}

// MarshalMLS implements codec.Marshaler.
func (g *GroupContext) MarshalMLS(w *codec.Writer) {
	w.Uint16(uint16(g.Version))
	w.Uint16(uint16(g.CipherSuite))
	w.Opaque(g.GroupID)
	w.Uint64(g.Epoch)
	w.Opaque(g.TreeHash)
	w.Opaque(g.ConfirmedTranscriptHash)
	marshalExtensions(w, g.Extensions)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (g *GroupContext) UnmarshalMLS(r *codec.Reader) {
	g.Version = ProtocolVersion(r.Uint16("group_context.version"))
	g.CipherSuite = suite.ID(r.Uint16("group_context.cipher_suite"))
	g.GroupID = r.Opaque("group_context.group_id")
	g.Epoch = r.Uint64("group_context.epoch")
	g.TreeHash = r.Opaque("group_context.tree_hash")
	g.ConfirmedTranscriptHash = r.Opaque("group_context.confirmed_transcript_hash")
	g.Extensions = unmarshalExtensions(r, "group_context.extensions")
}
