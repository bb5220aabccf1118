package group

import (
	"errors"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// proposalRef is the ProposalRef of the proposal carried by ac (§5.2).
func (p *Public) proposalRef(ac *message.AuthenticatedContent) []byte {
	return p.suite.RefHash("MLS 1.0 Proposal Reference", codec.Marshal(ac))
}

// externalSenders decodes the external_senders extension, if any.
func (p *Public) externalSenders() message.ExternalSenders {
	e := p.extension(message.ExtensionExternalSenders)
	if e == nil {
		return nil
	}
	var es message.ExternalSenders
	if codec.Unmarshal(e.Data, &es, "external_senders") != nil {
		return nil
	}
	return es
}

// senderKey returns the signature key that must have signed content
// (§6.1), or nil.
func (p *Public) senderKey(c *message.FramedContent) []byte {
	switch c.Sender.Type {
	case message.SenderMember:
		if l := p.tree.Leaf(treemath.LeafIndex(c.Sender.LeafIndex)); l != nil {
			return l.SignatureKey
		}
	case message.SenderExternal:
		if es := p.externalSenders(); uint64(c.Sender.SenderIndex) < uint64(len(es)) {
			return es[c.Sender.SenderIndex].SignatureKey
		}
	case message.SenderNewMemberProposal:
		if c.ContentType == message.ContentProposal && c.Proposal.Type == message.ProposalAdd {
			return c.Proposal.Add.KeyPackage.LeafNode.SignatureKey
		}
	case message.SenderNewMemberCommit:
		if c.ContentType == message.ContentCommit && c.Commit.Path != nil {
			return c.Commit.Path.LeafNode.SignatureKey
		}
	}
	return nil
}

func (p *Public) memberKey(leaf uint32) []byte {
	if l := p.tree.Leaf(treemath.LeafIndex(leaf)); l != nil {
		return l.SignatureKey
	}
	return nil
}

// unprotect authenticates a handshake or application message of p's
// epoch. For a PrivateMessage it consumes the sender's ratchet generation.
func (p *Public) unprotect(m *message.MLSMessage) (*message.AuthenticatedContent, error) {
	ac, _, err := p.unprotectSkipping(m)
	return ac, err
}

// unprotectSkipping is unprotect that also reports how many generations
// of its sender's ratchet a PrivateMessage stepped over
// (secrettree.Tree.Skipped).
func (p *Public) unprotectSkipping(m *message.MLSMessage) (*message.AuthenticatedContent, int, error) {
	var ac *message.AuthenticatedContent
	var err error
	skipped := 0
	switch m.WireFormat {
	case message.WireFormatPublicMessage:
		ac, err = framing.UnprotectPublic(p.suite, m.PublicMessage, &p.ctx, p.epoch.MembershipKey, p.senderKey)
	case message.WireFormatPrivateMessage:
		err = p.secrets.use(func(t *secrettree.Tree) (err error) {
			ac, err = framing.UnprotectPrivate(p.suite, m.PrivateMessage, &p.ctx, t, p.epoch.SenderDataSecret, p.memberKey)
			if err == nil {
				skipped = t.Skipped()
			}
			return err
		})
	default:
		return nil, 0, fmt.Errorf("%w: wire format %d is not a group message", ErrMalformed, m.WireFormat)
	}
	if err != nil {
		return nil, 0, classifyFramingError(err)
	}
	return ac, skipped, nil
}

// classifyFramingError wraps a framing error with the matching group
// sentinel, keeping the original in the chain.
func classifyFramingError(err error) error {
	for _, c := range []struct{ from, to error }{
		{framing.ErrBadMembershipTag, ErrBadMembershipTag},
		{framing.ErrWrongGroup, ErrWrongGroup},
		{framing.ErrWrongEpoch, ErrWrongEpoch},
		{framing.ErrUnknownSender, ErrUnknownSender},
		{framing.ErrNotMember, ErrUnknownSender},
		{framing.ErrReplay, ErrReplay},
		{framing.ErrContentDecrypt, ErrDecrypt},
		{framing.ErrSenderDataDecrypt, ErrDecrypt},
		{framing.ErrBadPadding, ErrMalformed},
		{framing.ErrMalformed, ErrMalformed},
		{framing.ErrApplicationInPublic, ErrMalformed},
	} {
		if errors.Is(err, c.from) {
			return fmt.Errorf("%w: %w", c.to, err)
		}
	}
	return err
}

// frame signs content as the member g and protects it in the wire format
// wf with the keys of g's epoch.
func (g *Group) frame(content *message.FramedContent, wf message.WireFormat) (*message.MLSMessage, *message.AuthenticatedContent, error) {
	p := g.pub
	ac, err := framing.Sign(g.priv.signKey, wf, content, &p.ctx)
	if err != nil {
		return nil, nil, err
	}
	return g.protectSigned(ac)
}

// protectSigned protects already signed (and, for a commit, confirmed)
// content.
func (g *Group) protectSigned(ac *message.AuthenticatedContent) (*message.MLSMessage, *message.AuthenticatedContent, error) {
	p := g.pub
	m := &message.MLSMessage{Version: message.MLS10, WireFormat: ac.WireFormat}
	var err error
	switch ac.WireFormat {
	case message.WireFormatPublicMessage:
		m.PublicMessage, err = framing.ProtectPublic(p.suite, ac, &p.ctx, p.epoch.MembershipKey)
	case message.WireFormatPrivateMessage:
		err = p.secrets.use(func(t *secrettree.Tree) (err error) {
			m.PrivateMessage, err = framing.ProtectPrivate(p.suite, ac, t, p.epoch.SenderDataSecret, g.cfg.Padding)
			return err
		})
	default:
		err = fmt.Errorf("group: wire format %d for a group message", ac.WireFormat)
	}
	if err != nil {
		return nil, nil, err
	}
	return m, ac, nil
}

func (g *Group) content(ct message.ContentType, authData []byte) message.FramedContent {
	return message.FramedContent{
		GroupID:           g.pub.ctx.GroupID,
		Epoch:             g.pub.ctx.Epoch,
		Sender:            message.MemberSender(uint32(g.priv.leaf)),
		AuthenticatedData: nonNil(authData),
		ContentType:       ct,
	}
}
