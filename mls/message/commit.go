package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// ProposalOrRefType says whether a commit carries a proposal by value or by
// reference (RFC 9420 §12.4).
type ProposalOrRefType uint8

// The ProposalOrRef types of RFC 9420 §12.4.
const (
	ProposalOrRefProposal  ProposalOrRefType = 1
	ProposalOrRefReference ProposalOrRefType = 2
)

// ProposalOrRef is one entry of a Commit's proposal list. Type selects
// Proposal (by value) or Reference (a ProposalRef, the RefHash of the
// AuthenticatedContent that carried the proposal).
type ProposalOrRef struct {
	Type      ProposalOrRefType
	Proposal  *Proposal
	Reference []byte
}

// MarshalMLS implements codec.Marshaler.
func (p *ProposalOrRef) MarshalMLS(w *codec.Writer) {
	w.Uint8(uint8(p.Type))
	switch p.Type {
	case ProposalOrRefProposal:
		if p.Proposal == nil {
			panic("message: ProposalOrRef of type proposal has no Proposal")
		}
		p.Proposal.MarshalMLS(w)
	case ProposalOrRefReference:
		w.Opaque(p.Reference)
	}
}

// UnmarshalMLS implements codec.Unmarshaler.
func (p *ProposalOrRef) UnmarshalMLS(r *codec.Reader) {
	*p = ProposalOrRef{Type: ProposalOrRefType(r.Uint8("proposal_or_ref.type"))}
	switch p.Type {
	case ProposalOrRefProposal:
		p.Proposal = new(Proposal)
		p.Proposal.UnmarshalMLS(r)
	case ProposalOrRefReference:
		p.Reference = r.Opaque("proposal_or_ref.reference")
	default:
		r.Fail("proposal_or_ref.type", fmt.Errorf("%w %d", ErrUnknownProposalOrRefType, p.Type))
	}
}

// Commit applies proposals and optionally refreshes the committer's path
// (RFC 9420 §12.4). Path is nil when the commit has no UpdatePath.
type Commit struct {
	Proposals []ProposalOrRef
	Path      *UpdatePath
}

// MarshalMLS implements codec.Marshaler.
func (c *Commit) MarshalMLS(w *codec.Writer) {
	writeList(w, c.Proposals)
	w.Optional(c.Path != nil)
	if c.Path != nil {
		c.Path.MarshalMLS(w)
	}
}

// UnmarshalMLS implements codec.Unmarshaler.
func (c *Commit) UnmarshalMLS(r *codec.Reader) {
	c.Proposals = readList[ProposalOrRef](r, "commit.proposals")
	c.Path = nil
	if r.Optional("commit.path") {
		c.Path = new(UpdatePath)
		c.Path.UnmarshalMLS(r)
	}
}

// HPKECiphertext is an HPKE encryption (RFC 9420 §7.6).
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

// MarshalMLS implements codec.Marshaler.
func (c *HPKECiphertext) MarshalMLS(w *codec.Writer) {
	w.Opaque(c.KEMOutput)
	w.Opaque(c.Ciphertext)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (c *HPKECiphertext) UnmarshalMLS(r *codec.Reader) {
	c.KEMOutput = r.Opaque("hpke_ciphertext.kem_output")
	c.Ciphertext = r.Opaque("hpke_ciphertext.ciphertext")
}

// UpdatePathNode is the new public key of one node of the committer's
// filtered direct path and its path secret encrypted to each node of the
// copath child's resolution (RFC 9420 §7.6).
type UpdatePathNode struct {
	EncryptionKey       []byte
	EncryptedPathSecret []HPKECiphertext
}

// MarshalMLS implements codec.Marshaler.
func (n *UpdatePathNode) MarshalMLS(w *codec.Writer) {
	w.Opaque(n.EncryptionKey)
	writeList(w, n.EncryptedPathSecret)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (n *UpdatePathNode) UnmarshalMLS(r *codec.Reader) {
	n.EncryptionKey = r.Opaque("update_path_node.encryption_key")
	n.EncryptedPathSecret = readList[HPKECiphertext](r, "update_path_node.encrypted_path_secret")
}

// UpdatePath is the committer's new leaf and the new parent nodes of its
// filtered direct path (RFC 9420 §7.6).
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

// MarshalMLS implements codec.Marshaler.
func (p *UpdatePath) MarshalMLS(w *codec.Writer) {
	p.LeafNode.MarshalMLS(w)
	writeList(w, p.Nodes)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (p *UpdatePath) UnmarshalMLS(r *codec.Reader) {
	p.LeafNode.UnmarshalMLS(r)
	p.Nodes = readList[UpdatePathNode](r, "update_path.nodes")
}
