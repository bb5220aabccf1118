package group

import (
	"errors"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
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

// An opened message is a handshake or application message of p's epoch,
// authenticated.
type opened struct {
	ac *message.AuthenticatedContent
	// skipped counts the generations of its sender's ratchet that a
	// PrivateMessage stepped over (secrettree.Tree.Skipped).
	skipped int
	// pathSigned reports that the LeafNode in a member's commit path was
	// found validly signed, with the commit's own signature in one batch
	// (suite.VerifyBatch): the two are nearly always one key's, and
	// together they cost two thirds of the two checks one by one.
	pathSigned bool
}

// open authenticates a handshake or application message of p's epoch.
// For a PrivateMessage it consumes the sender's ratchet generation.
func (p *Public) open(m *message.MLSMessage) (opened, error) {
	switch m.WireFormat {
	case message.WireFormatPublicMessage:
		ac, check, err := framing.UnprotectPublicDeferred(p.suite, m.PublicMessage, &p.ctx, p.epoch.MembershipKey, p.senderKey)
		if err != nil {
			return opened{}, classifyFramingError(err)
		}
		checks := []suite.SignatureCheck{check}
		c := &ac.Content
		if c.Sender.Type == message.SenderMember && c.ContentType == message.ContentCommit && c.Commit.Path != nil {
			checks = append(checks, tree.LeafSignature(&c.Commit.Path.LeafNode, p.ctx.GroupID, treemath.LeafIndex(c.Sender.LeafIndex)))
		}
		// A bad path signature is left for the commit's validation to
		// find, so that a commit's faults are reported in one order
		// however they are checked.
		bad, err := framing.VerifySignatures(p.suite, checks)
		if bad == 0 {
			return opened{}, classifyFramingError(err)
		}
		return opened{ac: ac, pathSigned: len(checks) == 2 && bad == -1}, nil
	case message.WireFormatPrivateMessage:
		var o opened
		err := p.secrets.use(func(t *secrettree.Tree) (err error) {
			o.ac, err = framing.UnprotectPrivate(p.suite, m.PrivateMessage, &p.ctx, t, p.epoch.SenderDataSecret, p.memberKey)
			if err == nil {
				o.skipped = t.Skipped()
			}
			return err
		})
		if err != nil {
			return opened{}, classifyFramingError(err)
		}
		return o, nil
	default:
		return opened{}, fmt.Errorf("%w: wire format %d is not a group message", ErrMalformed, m.WireFormat)
	}
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
