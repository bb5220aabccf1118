package group

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// Received is what Handle made of a message.
type Received struct {
	ContentType message.ContentType
	Sender      message.Sender
	// Epoch is the epoch the message was sent in: the state's, or for a
	// late application message a past epoch it keeps (Config.PastEpochs).
	Epoch             uint64
	AuthenticatedData []byte
	// ApplicationData is the plaintext of an application message.
	ApplicationData []byte
	// Proposal and ProposalRef describe a proposal, now cached.
	Proposal    *message.Proposal
	ProposalRef []byte
	// Next is the state a commit leads to; nil if the commit removed us.
	Next *Group
	// Removed reports that the commit removed us from the group.
	Removed bool
}

// Handle processes an encoded MLSMessage of g's epoch: it decrypts an
// application message, caches a proposal, or processes a commit into a
// new state (Received.Next). An application message of a past epoch is
// read if g keeps that epoch's secret tree (Config.PastEpochs). g itself
// changes only by the secret-tree ratchet steps of PrivateMessages and by
// the proposal cache.
func (g *Group) Handle(data []byte) (*Received, error) {
	m, err := message.ParseMLSMessage(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return g.HandleMessage(m)
}

// HandleMessage is Handle for a decoded message.
func (g *Group) HandleMessage(m *message.MLSMessage) (*Received, error) {
	if pm := m.PrivateMessage; m.WireFormat == message.WireFormatPrivateMessage && pm != nil &&
		pm.ContentType == message.ContentApplication && pm.Epoch < g.pub.ctx.Epoch && bytes.Equal(pm.GroupID, g.pub.ctx.GroupID) {
		if r := g.reader(pm.Epoch); r != nil {
			return g.handleLate(r, pm)
		}
	}
	ac, err := g.pub.unprotect(m)
	if err != nil {
		return nil, err
	}
	c := &ac.Content
	r := &Received{ContentType: c.ContentType, Sender: c.Sender, Epoch: c.Epoch, AuthenticatedData: c.AuthenticatedData}
	switch c.ContentType {
	case message.ContentApplication:
		if m.WireFormat != message.WireFormatPrivateMessage {
			return nil, fmt.Errorf("%w: application data in a PublicMessage", ErrMalformed)
		}
		r.ApplicationData = c.ApplicationData
	case message.ContentProposal:
		if err := checkReceivedProposal(ac); err != nil {
			return nil, err
		}
		r.Proposal = c.Proposal
		r.ProposalRef = g.pub.proposalRef(ac)
		g.local.add(cachedProposal{ref: r.ProposalRef, proposal: c.Proposal, sender: c.Sender}, nil)
	case message.ContentCommit:
		next, err := g.processCommit(ac)
		if err != nil {
			return nil, err
		}
		r.Next, r.Removed = next, next == nil
	default:
		return nil, fmt.Errorf("%w: content type %d", ErrMalformed, c.ContentType)
	}
	return r, nil
}

// processCommit applies a commit from another member or an external
// joiner (§12.4.2) and returns the next state, or nil if we were removed.
func (g *Group) processCommit(ac *message.AuthenticatedContent) (*Group, error) {
	p, s := g.pub, g.pub.suite
	c := ac.Content.Commit
	sender := ac.Content.Sender
	external := false
	switch sender.Type {
	case message.SenderMember:
		if g.priv != nil && sender.LeafIndex == uint32(g.priv.leaf) {
			return nil, ErrOwnCommit
		}
	case message.SenderNewMemberCommit:
		if ac.WireFormat != message.WireFormatPublicMessage {
			return nil, fmt.Errorf("%w: external commit not in a PublicMessage", ErrInvalidExternalCommit)
		}
		external = true
	default:
		return nil, fmt.Errorf("%w: commit from sender type %d", ErrUnknownSender, sender.Type)
	}
	if g.pub.reinit != nil {
		return nil, ErrReInitPending
	}
	props, err := g.resolve(c.Proposals, sender)
	if err != nil {
		return nil, err
	}
	st, err := p.stage(props, sender, &g.cfg, stageOptions{})
	if err != nil {
		return nil, err
	}
	if c.Path == nil && st.pathRequired {
		return nil, ErrPathRequired
	}
	if c.Path == nil && p.dmls() {
		return nil, ErrDMLSPathRequired
	}

	priv := g.priv
	if priv != nil {
		if slices.Contains(st.removed, priv.leaf) {
			priv = nil
		} else if ref, ok := st.updated[priv.leaf]; ok {
			_, own := g.local.snapshot()
			key, ok := own[string(ref)]
			if !ok {
				return nil, fmt.Errorf("%w: our leaf was updated by a proposal we did not make", ErrInvalidUpdate)
			}
			priv = &Private{leaf: priv.leaf, signKey: priv.signKey, path: treekem.NewPrivateState(priv.leaf, key)}
		}
	}

	var commitSecret, conf []byte
	if c.Path != nil {
		t := st.tree
		leaf := &c.Path.LeafNode
		var committer treemath.LeafIndex
		if external {
			if err := t.CheckNewLeaf(treemath.LeafIndex(t.LeafCount()), leaf); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidPath, err)
			}
			if committer, err = t.AddLeaf(leaf); err != nil {
				return nil, err
			}
		} else {
			committer = treemath.LeafIndex(sender.LeafIndex)
			if err := t.CheckNewLeaf(committer, leaf); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidPath, err)
			}
		}
		if err := tree.ValidateLeafNode(s, leaf, tree.LeafContext{
			GroupID: p.ctx.GroupID, LeafIndex: committer, Source: message.LeafNodeSourceCommit,
			Version: p.ctx.Version, Required: requiredCapabilities(st.extensions), CredentialTypes: t.CredentialTypes(),
		}); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidPath, err)
		}
		if err := checkPathKeys(t, c.Path); err != nil {
			return nil, err
		}
		if priv == nil {
			// A removed member cannot decrypt the path; nothing follows.
			return nil, nil
		}
		applied, err := priv.path.Apply(t, committer, c.Path, treekem.PathOptions{GroupContext: p.provisionalContext(st), Exclude: st.excluded()})
		if err != nil {
			return nil, pathError(err)
		}
		commitSecret = applied.CommitSecret
		if !external {
			conf, err = p.receivedConfirmation(t, committer, priv.leaf, applied.PathSecret)
			if err != nil {
				return nil, err
			}
		}
		clear(applied.PathSecret)
		priv = &Private{leaf: priv.leaf, signKey: priv.signKey, path: applied.Private}
	} else if priv == nil {
		return nil, nil
	}

	var initSecret []byte
	if st.externalInit != nil {
		initSecret, err = externalInitSecret(p, st.externalInit.KEMOutput)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidExternalCommit, err)
		}
	}
	adv, err := p.advance(st, ac, commitSecret, initSecret, conf, g.lookupPSK)
	if err != nil {
		return nil, err
	}
	defer adv.zero()
	if err := adv.derived.Epoch.VerifyConfirmationTag(adv.ctx.ConfirmedTranscriptHash, ac.Auth.ConfirmationTag); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadConfirmationTag, err)
	}
	newPub, err := newPublic(s, adv.ctx, st.tree, ac.Auth.ConfirmationTag, adv.derived.Epoch, g.cfg.SecretTree)
	if err != nil {
		return nil, err
	}
	newPub.reinit = st.reinit
	return g.next(newPub, priv), nil
}

// pathError classifies a failure to apply an UpdatePath.
func pathError(err error) error {
	if errors.Is(err, tree.ErrParentHashMismatch) || errors.Is(err, treekem.ErrPublicKeyMismatch) ||
		errors.Is(err, tree.ErrPathLength) || errors.Is(err, treekem.ErrCiphertextCount) ||
		errors.Is(err, treekem.ErrDecrypt) || errors.Is(err, treekem.ErrNoDecryptionKey) ||
		errors.Is(err, tree.ErrLeafNodeInvalid) {
		return fmt.Errorf("%w: %w", ErrInvalidPath, err)
	}
	return err
}

// resolve turns a commit's ProposalOrRefs into proposals with senders.
func (g *Group) resolve(list []message.ProposalOrRef, committer message.Sender) ([]resolved, error) {
	out := make([]resolved, 0, len(list))
	for _, por := range list {
		switch por.Type {
		case message.ProposalOrRefProposal:
			if committer.Type == message.SenderMember && por.Proposal.Type == message.ProposalUpdate {
				return nil, fmt.Errorf("%w: %w: update by value", ErrInvalidProposalList, ErrCommitterUpdate)
			}
			out = append(out, resolved{proposal: por.Proposal, sender: committer})
		case message.ProposalOrRefReference:
			c, ok := g.local.find(por.Reference)
			if !ok {
				return nil, fmt.Errorf("%w: %x", ErrUnknownProposalRef, por.Reference)
			}
			out = append(out, resolved{proposal: c.proposal, sender: c.sender, ref: c.ref})
		default:
			return nil, fmt.Errorf("%w: proposal-or-ref type %d", ErrMalformed, por.Type)
		}
	}
	return out, nil
}
