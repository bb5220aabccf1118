package group

import (
	"bytes"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Proposal constructors for the by-value and by-reference forms.

// AddProposal proposes adding the client of kp.
func AddProposal(kp *message.KeyPackage) *message.Proposal {
	return &message.Proposal{Type: message.ProposalAdd, Add: &message.Add{KeyPackage: *kp}}
}

// RemoveProposal proposes removing the member at leaf.
func RemoveProposal(leaf uint32) *message.Proposal {
	return &message.Proposal{Type: message.ProposalRemove, Remove: &message.Remove{Removed: leaf}}
}

// PSKProposal proposes injecting the PSK id.
func PSKProposal(id message.PreSharedKeyID) *message.Proposal {
	return &message.Proposal{Type: message.ProposalPreSharedKey, PreSharedKey: &message.PreSharedKey{PSK: id}}
}

// ReInitProposal proposes reinitialising the group with new parameters.
func ReInitProposal(groupID []byte, id suite.ID, extensions []message.Extension) *message.Proposal {
	return &message.Proposal{Type: message.ProposalReInit, ReInit: &message.ReInit{
		GroupID: bytes.Clone(groupID), Version: message.MLS10, CipherSuite: id, Extensions: nonNil(extensions),
	}}
}

// GroupContextExtensionsProposal proposes replacing the GroupContext
// extensions.
func GroupContextExtensionsProposal(exts []message.Extension) *message.Proposal {
	return &message.Proposal{Type: message.ProposalGroupContextExtensions, GroupContextExtensions: &message.GroupContextExtensions{Extensions: nonNil(exts)}}
}

// Propose sends p as a standalone proposal from us, in our handshake wire
// format, and caches it so that a later commit of ours can include it by
// reference. It returns the encoded MLSMessage and the proposal's ref.
// Update proposals are made with ProposeUpdate.
func (g *Group) Propose(p *message.Proposal, authData []byte) (msg, ref []byte, err error) {
	if err := g.requireMember(); err != nil {
		return nil, nil, err
	}
	if p.Type == message.ProposalUpdate || p.Type == message.ProposalExternalInit {
		return nil, nil, fmt.Errorf("%w: propose type %d with its own method", ErrInvalidProposal, p.Type)
	}
	return g.propose(p, authData, nil)
}

// ProposeUpdate proposes replacing our leaf with one carrying a fresh
// encryption key. The new private key is kept in the epoch's local state
// until a commit applies (or the epoch ends without) the proposal.
func (g *Group) ProposeUpdate(authData []byte) (msg, ref []byte, err error) {
	if err := g.requireMember(); err != nil {
		return nil, nil, err
	}
	s := g.pub.suite
	priv, err := s.GenerateHPKEKey()
	if err != nil {
		return nil, nil, err
	}
	leaf := *g.pub.tree.Leaf(g.priv.leaf)
	leaf.EncryptionKey = priv.Public().Bytes()
	leaf.Source = message.LeafNodeSourceUpdate
	leaf.Lifetime = message.Lifetime{}
	leaf.ParentHash = []byte{}
	leaf.Signature, err = g.priv.signKey.SignWithLabel("LeafNodeTBS", leaf.TBS(g.GroupID(), uint32(g.priv.leaf)))
	if err != nil {
		return nil, nil, err
	}
	p := &message.Proposal{Type: message.ProposalUpdate, Update: &message.Update{LeafNode: leaf}}
	return g.propose(p, authData, priv)
}

func (g *Group) propose(p *message.Proposal, authData []byte, updatePriv *suite.HPKEPrivateKey) ([]byte, []byte, error) {
	c := g.content(message.ContentProposal, authData)
	c.Proposal = p
	m, ac, err := g.frame(&c, g.cfg.wireFormat())
	if err != nil {
		return nil, nil, err
	}
	ref := g.pub.proposalRef(ac)
	g.local.add(cachedProposal{ref: ref, proposal: p, sender: c.Sender}, updatePriv)
	return codec.Marshal(m), ref, nil
}

func (l *epochLocal) add(c cachedProposal, updatePriv *suite.HPKEPrivateKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, have := range l.proposals {
		if bytes.Equal(have.ref, c.ref) {
			return
		}
	}
	l.proposals = append(l.proposals, c)
	if updatePriv != nil {
		if l.ownUpdates == nil {
			l.ownUpdates = map[string]*suite.HPKEPrivateKey{}
		}
		l.ownUpdates[string(c.ref)] = updatePriv
	}
}

func (l *epochLocal) find(ref []byte) (cachedProposal, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.proposals {
		if bytes.Equal(c.ref, ref) {
			return c, true
		}
	}
	return cachedProposal{}, false
}

func (l *epochLocal) snapshot() ([]cachedProposal, map[string]*suite.HPKEPrivateKey) {
	l.mu.Lock()
	defer l.mu.Unlock()
	own := make(map[string]*suite.HPKEPrivateKey, len(l.ownUpdates))
	for k, v := range l.ownUpdates {
		own[k] = v
	}
	return append([]cachedProposal(nil), l.proposals...), own
}

// PendingProposals returns the number of proposals cached in this epoch.
func (g *Group) PendingProposals() int {
	g.local.mu.Lock()
	defer g.local.mu.Unlock()
	return len(g.local.proposals)
}

// checkReceivedProposal applies the rules on who may send what (§12.1.8)
// to a proposal that arrives on its own.
func checkReceivedProposal(ac *message.AuthenticatedContent) error {
	p := ac.Content.Proposal
	switch ac.Content.Sender.Type {
	case message.SenderMember:
		if p.Type == message.ProposalExternalInit {
			return fmt.Errorf("%w: external init from a member", ErrInvalidProposal)
		}
	case message.SenderExternal:
		switch p.Type {
		case message.ProposalAdd, message.ProposalRemove, message.ProposalPreSharedKey, message.ProposalReInit, message.ProposalGroupContextExtensions:
		default:
			return fmt.Errorf("%w: type %d from an external sender", ErrInvalidProposal, p.Type)
		}
	case message.SenderNewMemberProposal:
		if p.Type != message.ProposalAdd {
			return fmt.Errorf("%w: type %d from a new member", ErrInvalidProposal, p.Type)
		}
	default:
		return fmt.Errorf("%w: proposal from sender type %d", ErrInvalidProposal, ac.Content.Sender.Type)
	}
	if ac.WireFormat != message.WireFormatPublicMessage && ac.Content.Sender.Type != message.SenderMember {
		return fmt.Errorf("%w: external proposal not in a PublicMessage", ErrInvalidProposal)
	}
	return nil
}

// ExternalProposal builds a proposal from an external sender (§12.1.8):
// senderIndex is the signer's position in the group's external_senders
// extension, or, with newMember set, the proposal is an Add of the
// signer's own KeyPackage (new_member_proposal). groupID and epoch name
// the epoch the proposal is for. The suite is the signature key's.
func ExternalProposal(signer *suite.SignaturePrivateKey, groupID []byte, epoch uint64, senderIndex uint32, newMember bool, p *message.Proposal, authData []byte) ([]byte, error) {
	s := signer.Suite()
	sender := message.Sender{Type: message.SenderExternal, SenderIndex: senderIndex}
	if newMember {
		sender = message.Sender{Type: message.SenderNewMemberProposal}
	}
	c := &message.FramedContent{
		GroupID: groupID, Epoch: epoch, Sender: sender, AuthenticatedData: nonNil(authData),
		ContentType: message.ContentProposal, Proposal: p,
	}
	ac, err := framing.Sign(signer, message.WireFormatPublicMessage, c, nil)
	if err != nil {
		return nil, err
	}
	pm, err := framing.ProtectPublic(s, ac, nil, nil)
	if err != nil {
		return nil, err
	}
	return codec.Marshal(&message.MLSMessage{Version: message.MLS10, WireFormat: message.WireFormatPublicMessage, PublicMessage: pm}), nil
}
