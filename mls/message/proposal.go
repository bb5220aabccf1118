package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// ProposalType is a value from the IANA "MLS Proposal Types" registry.
type ProposalType uint16

// The proposal types of RFC 9420 §17.4.
const (
	ProposalAdd                    ProposalType = 0x0001
	ProposalUpdate                 ProposalType = 0x0002
	ProposalRemove                 ProposalType = 0x0003
	ProposalPreSharedKey           ProposalType = 0x0004
	ProposalReInit                 ProposalType = 0x0005
	ProposalExternalInit           ProposalType = 0x0006
	ProposalGroupContextExtensions ProposalType = 0x0007
)

// Proposal is a proposed change to the group (RFC 9420 §12.1). Type
// selects which one of the body pointers is set; the others are nil after
// decoding and ignored when encoding. A struct with one pointer per kind
// rather than an interface keeps a type switch out of every caller: code
// that handles Adds reads p.Add after checking p.Type.
//
// Unknown proposal types are rejected with ErrUnknownProposalType: a
// proposal body carries no length, so there is no way to carry one
// opaquely, and §13.5 keeps GREASE values out of proposal_type.
type Proposal struct {
	Type                   ProposalType
	Add                    *Add
	Update                 *Update
	Remove                 *Remove
	PreSharedKey           *PreSharedKey
	ReInit                 *ReInit
	ExternalInit           *ExternalInit
	GroupContextExtensions *GroupContextExtensions
}

// MarshalMLS implements codec.Marshaler. A body pointer that Type selects
// but that is nil is a programming error and panics.
func (p *Proposal) MarshalMLS(w *codec.Writer) {
	w.Uint16(uint16(p.Type))
	var body codec.Marshaler
	switch p.Type {
	case ProposalAdd:
		body = nilIfAbsent(p.Add)
	case ProposalUpdate:
		body = nilIfAbsent(p.Update)
	case ProposalRemove:
		body = nilIfAbsent(p.Remove)
	case ProposalPreSharedKey:
		body = nilIfAbsent(p.PreSharedKey)
	case ProposalReInit:
		body = nilIfAbsent(p.ReInit)
	case ProposalExternalInit:
		body = nilIfAbsent(p.ExternalInit)
	case ProposalGroupContextExtensions:
		body = nilIfAbsent(p.GroupContextExtensions)
	default:
		panic(fmt.Sprintf("message: Proposal with unknown type %d", p.Type))
	}
	if body == nil {
		panic(fmt.Sprintf("message: Proposal of type %d has no body", p.Type))
	}
	body.MarshalMLS(w)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (p *Proposal) UnmarshalMLS(r *codec.Reader) {
	*p = Proposal{Type: ProposalType(r.Uint16("proposal.proposal_type"))}
	switch p.Type {
	case ProposalAdd:
		p.Add = new(Add)
		p.Add.UnmarshalMLS(r)
	case ProposalUpdate:
		p.Update = new(Update)
		p.Update.UnmarshalMLS(r)
	case ProposalRemove:
		p.Remove = new(Remove)
		p.Remove.UnmarshalMLS(r)
	case ProposalPreSharedKey:
		p.PreSharedKey = new(PreSharedKey)
		p.PreSharedKey.UnmarshalMLS(r)
	case ProposalReInit:
		p.ReInit = new(ReInit)
		p.ReInit.UnmarshalMLS(r)
	case ProposalExternalInit:
		p.ExternalInit = new(ExternalInit)
		p.ExternalInit.UnmarshalMLS(r)
	case ProposalGroupContextExtensions:
		p.GroupContextExtensions = new(GroupContextExtensions)
		p.GroupContextExtensions.UnmarshalMLS(r)
	default:
		r.Fail("proposal.proposal_type", fmt.Errorf("%w %d", ErrUnknownProposalType, p.Type))
	}
}

// Add proposes adding the client of a KeyPackage (RFC 9420 §12.1.1).
type Add struct {
	KeyPackage KeyPackage
}

// MarshalMLS implements codec.Marshaler.
func (a *Add) MarshalMLS(w *codec.Writer) { a.KeyPackage.MarshalMLS(w) }

// UnmarshalMLS implements codec.Unmarshaler.
func (a *Add) UnmarshalMLS(r *codec.Reader) { a.KeyPackage.UnmarshalMLS(r) }

// Update proposes replacing the sender's leaf (RFC 9420 §12.1.2).
type Update struct {
	LeafNode LeafNode
}

// MarshalMLS implements codec.Marshaler.
func (u *Update) MarshalMLS(w *codec.Writer) { u.LeafNode.MarshalMLS(w) }

// UnmarshalMLS implements codec.Unmarshaler.
func (u *Update) UnmarshalMLS(r *codec.Reader) { u.LeafNode.UnmarshalMLS(r) }

// Remove proposes removing the member at a leaf (RFC 9420 §12.1.3).
type Remove struct {
	Removed uint32 // leaf index
}

// MarshalMLS implements codec.Marshaler.
func (rm *Remove) MarshalMLS(w *codec.Writer) { w.Uint32(rm.Removed) }

// UnmarshalMLS implements codec.Unmarshaler.
func (rm *Remove) UnmarshalMLS(r *codec.Reader) { rm.Removed = r.Uint32("remove.removed") }

// PreSharedKey proposes injecting a PSK into the next epoch
// (RFC 9420 §12.1.4).
type PreSharedKey struct {
	PSK PreSharedKeyID
}

// MarshalMLS implements codec.Marshaler.
func (p *PreSharedKey) MarshalMLS(w *codec.Writer) { p.PSK.MarshalMLS(w) }

// UnmarshalMLS implements codec.Unmarshaler.
func (p *PreSharedKey) UnmarshalMLS(r *codec.Reader) { p.PSK.UnmarshalMLS(r) }

// ReInit proposes reinitialising the group with new parameters
// (RFC 9420 §12.1.5).
type ReInit struct {
	GroupID     []byte
	Version     ProtocolVersion
	CipherSuite suite.ID
	Extensions  []Extension
}

// MarshalMLS implements codec.Marshaler.
func (ri *ReInit) MarshalMLS(w *codec.Writer) {
	w.Opaque(ri.GroupID)
	w.Uint16(uint16(ri.Version))
	w.Uint16(uint16(ri.CipherSuite))
	marshalExtensions(w, ri.Extensions)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (ri *ReInit) UnmarshalMLS(r *codec.Reader) {
	ri.GroupID = r.Opaque("reinit.group_id")
	ri.Version = ProtocolVersion(r.Uint16("reinit.version"))
	ri.CipherSuite = suite.ID(r.Uint16("reinit.cipher_suite"))
	ri.Extensions = unmarshalExtensions(r, "reinit.extensions")
}

// ExternalInit carries the KEM output with which an external joiner
// derives the next epoch's init secret (RFC 9420 §12.1.6).
type ExternalInit struct {
	KEMOutput []byte
}

// MarshalMLS implements codec.Marshaler.
func (e *ExternalInit) MarshalMLS(w *codec.Writer) { w.Opaque(e.KEMOutput) }

// UnmarshalMLS implements codec.Unmarshaler.
func (e *ExternalInit) UnmarshalMLS(r *codec.Reader) {
	e.KEMOutput = r.Opaque("external_init.kem_output")
}

// GroupContextExtensions proposes replacing the group context's extensions
// (RFC 9420 §12.1.7).
type GroupContextExtensions struct {
	Extensions []Extension
}

// MarshalMLS implements codec.Marshaler.
func (g *GroupContextExtensions) MarshalMLS(w *codec.Writer) { marshalExtensions(w, g.Extensions) }

// UnmarshalMLS implements codec.Unmarshaler.
func (g *GroupContextExtensions) UnmarshalMLS(r *codec.Reader) {
	g.Extensions = unmarshalExtensions(r, "group_context_extensions.extensions")
}
