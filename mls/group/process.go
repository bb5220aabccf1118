package group

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/secrettree"
	"github.com/mls-appservice/mls-appservice/mls/suite"
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
	// Skipped is how many earlier messages of the same sender (in its
	// ratchet for this content type) this PrivateMessage stepped over:
	// they were not received before it, lost or late.
	Skipped int
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

// OpenDeferred decrypts an application PrivateMessage of g's epoch as
// Handle does, but leaves its signature check to the caller, to be made
// with those of other messages at once (suite.VerifyBatch): for a caller
// that applies a run of messages all or nothing. The sender's ratchet
// generation is consumed as if the signature verified, so a caller whose
// check fails must discard g's state and what the message said. Any other
// message, a late one of a past epoch included, is refused
// (ErrNotApplication, ErrWrongEpoch): Handle takes it.
func (g *Group) OpenDeferred(data []byte) (*Received, suite.SignatureCheck, error) {
	m, err := message.ParseMLSMessage(data)
	if err != nil {
		return nil, suite.SignatureCheck{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	pm := m.PrivateMessage
	if m.WireFormat != message.WireFormatPrivateMessage || pm == nil || pm.ContentType != message.ContentApplication {
		return nil, suite.SignatureCheck{}, ErrNotApplication
	}
	p := g.pub
	var ac *message.AuthenticatedContent
	var check suite.SignatureCheck
	skipped := 0
	err = p.secrets.use(func(t *secrettree.Tree) (err error) {
		ac, check, err = framing.UnprotectPrivateDeferred(p.suite, pm, &p.ctx, t, p.epoch.SenderDataSecret, p.memberKey)
		if err == nil {
			skipped = t.Skipped()
		}
		return err
	})
	if err != nil {
		return nil, suite.SignatureCheck{}, classifyFramingError(err)
	}
	c := &ac.Content
	return &Received{ContentType: c.ContentType, Sender: c.Sender, Epoch: c.Epoch, AuthenticatedData: c.AuthenticatedData,
		ApplicationData: c.ApplicationData, Skipped: skipped}, check, nil
}

// HandleMessage is Handle for a decoded message.
func (g *Group) HandleMessage(m *message.MLSMessage) (*Received, error) {
	if pm := m.PrivateMessage; m.WireFormat == message.WireFormatPrivateMessage && pm != nil &&
		pm.ContentType == message.ContentApplication && pm.Epoch < g.pub.ctx.Epoch && bytes.Equal(pm.GroupID, g.pub.ctx.GroupID) {
		if r := g.reader(pm.Epoch); r != nil {
			return g.handleLate(r, pm)
		}
	}
	o, err := g.pub.open(m)
	if err != nil {
		return nil, err
	}
	ac := o.ac
	c := &ac.Content
	r := &Received{ContentType: c.ContentType, Sender: c.Sender, Epoch: c.Epoch, AuthenticatedData: c.AuthenticatedData,
		Skipped: o.skipped}
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
		pub, privs, err := g.processCommit(o, []*Private{g.priv})
		if err != nil {
			return nil, err
		}
		if pub != nil && privs[0] != nil {
			r.Next = g.next(pub, privs[0])
		}
		r.Removed = r.Next == nil
	default:
		return nil, fmt.Errorf("%w: content type %d", ErrMalformed, c.ContentType)
	}
	return r, nil
}

// processCommit applies a commit from another member or an external
// joiner (§12.4.2) for the members privs, all of whom share g's Public:
// privs[0] is g's own (nil for a view without one), the others are
// further members of ours (HandleCommitShared). The commit is verified,
// staged and its key schedule run once; each member's private path keys
// come from decrypting its own path secret. It returns the next Public
// and each member's next Private, index-aligned with privs and nil for a
// member the commit removed; the Public is nil if it removed them all.
// A failure before the key schedule leaves g's Public as it was (under
// DMLS its PRF is punctured only once every member's path decrypted).
func (g *Group) processCommit(o opened, privs []*Private) (*Public, []*Private, error) {
	p, s, ac := g.pub, g.pub.suite, o.ac
	rc, err := g.receiveCommit(o, privs)
	if err != nil {
		return nil, nil, err
	}
	defer rc.zero()
	if rc.survivors == 0 {
		return nil, rc.next, nil
	}
	st := rc.st
	var commitSecret, conf []byte
	if rc.top != nil {
		commitSecret = s.DeriveSecret(rc.top, "path")
		defer clear(commitSecret)
		if !rc.external {
			if conf, err = p.commitConfirmation(rc.top); err != nil {
				return nil, nil, err
			}
		}
	}
	var initSecret []byte
	if st.externalInit != nil {
		initSecret, err = externalInitSecret(p, st.externalInit.KEMOutput)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrInvalidExternalCommit, err)
		}
	}
	adv, err := p.advance(st, ac, commitSecret, initSecret, conf, g.lookupPSK)
	if err != nil {
		return nil, nil, err
	}
	defer adv.zero()
	if err := adv.derived.Epoch.VerifyConfirmationTag(adv.ctx.ConfirmedTranscriptHash, ac.Auth.ConfirmationTag); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadConfirmationTag, err)
	}
	newPub, err := newPublic(s, adv.ctx, st.tree, ac.Auth.ConfirmationTag, adv.derived.Epoch, g.cfg.SecretTree)
	if err != nil {
		return nil, nil, err
	}
	newPub.reinit = st.reinit
	return newPub, rc.next, nil
}

// receivedCommit is a received commit verified and staged for some of
// our members, before the key schedule.
type receivedCommit struct {
	st *staged
	// next holds each member's next Private, as processCommit returns
	// them; survivors counts the non-nil ones.
	next      []*Private
	survivors int
	external  bool
	// top is path_secret[n], the secret of the committer's last filtered
	// direct path node, from which the commit secret and (DMLS) the
	// commit confirmation follow; nil without a path or survivors.
	top []byte
}

func (rc *receivedCommit) zero() { clear(rc.top) }

// receiveCommit validates the commit ac on g's epoch and stages it
// (§12.4.2), and derives the next private parts of the members privs
// (processCommit): everything but the key schedule. It changes nothing
// in g. If the commit removes every member, the path is validated but
// not merged.
func (g *Group) receiveCommit(o opened, privs []*Private) (*receivedCommit, error) {
	p, s, ac := g.pub, g.pub.suite, o.ac
	c := ac.Content.Commit
	sender := ac.Content.Sender
	rc := &receivedCommit{}
	switch sender.Type {
	case message.SenderMember:
		for _, priv := range privs {
			if priv != nil && sender.LeafIndex == uint32(priv.leaf) {
				return nil, ErrOwnCommit
			}
		}
	case message.SenderNewMemberCommit:
		if ac.WireFormat != message.WireFormatPublicMessage {
			return nil, fmt.Errorf("%w: external commit not in a PublicMessage", ErrInvalidExternalCommit)
		}
		rc.external = true
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
	rc.st = st

	rc.next = make([]*Private, len(privs))
	for i, priv := range privs {
		if priv == nil || slices.Contains(st.removed, priv.leaf) {
			continue
		}
		rc.next[i] = priv
		rc.survivors++
		if ref, ok := st.updated[priv.leaf]; ok {
			// Only g's member can have made an Update proposal we hold
			// the key of: the proposal cache is g's.
			_, own := g.local.snapshot()
			key, ok := own[string(ref)]
			if priv != g.priv || !ok {
				return nil, fmt.Errorf("%w: leaf %d was updated by a proposal we did not make", ErrInvalidUpdate, priv.leaf)
			}
			rc.next[i] = &Private{leaf: priv.leaf, signKey: priv.signKey, path: treekem.NewPrivateState(priv.leaf, key)}
		}
	}
	if c.Path == nil {
		return rc, nil
	}
	t := st.tree
	leaf := &c.Path.LeafNode
	var committer treemath.LeafIndex
	if rc.external {
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
	validate := tree.ValidateLeafNode
	if o.pathSigned {
		validate = tree.CheckLeafNode
	}
	if err := validate(s, leaf, tree.LeafContext{
		GroupID: p.ctx.GroupID, LeafIndex: committer, Source: message.LeafNodeSourceCommit,
		Version: p.ctx.Version, Required: requiredCapabilities(st.extensions), CredentialTypes: t.CredentialTypes(),
	}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPath, err)
	}
	if err := checkPathKeys(t, c.Path); err != nil {
		return nil, err
	}
	if rc.survivors == 0 {
		// Removed members cannot decrypt the path; nothing follows.
		return rc, nil
	}
	if rc.top, err = p.receivePath(st, committer, c.Path, rc.next); err != nil {
		return nil, err
	}
	return rc, nil
}

// receivePath merges path, from committer, into st.tree (§7.5) and
// replaces each non-nil member of privs, in place, by its private state
// after the commit: it decrypts the member's own path secret (one HPKE
// decryption each) and derives the keys above it, checked against the
// path, once for all members (treekem.PathKeys). It returns
// path_secret[n], the secret of the committer's last filtered direct path
// node. An error leaves privs partly replaced and
// st.tree merged; both must then be discarded.
func (p *Public) receivePath(st *staged, committer treemath.LeafIndex, path *message.UpdatePath, privs []*Private) ([]byte, error) {
	t := st.tree
	// The filtered direct path and the copath resolutions are those of
	// the tree before the merge, which does not change them: the merge
	// only sets nodes on the committer's direct path.
	fdp := t.FilteredDirectPath(committer)
	if err := t.MergeUpdatePath(committer, path); err != nil {
		return nil, pathError(err)
	}
	ctx := p.provisionalContext(st)
	ctx.TreeHash = t.RootHash()
	ctxBytes := codec.Marshal(&ctx)
	exclude := st.excluded()
	// Each member's ciphertext is found first, then all are opened as one
	// batch (suite.DecryptAllWithLabel): a commit processed for many
	// members of ours opens a path secret for each.
	var at []int
	var nodes []treemath.NodeIndex
	var keys []*suite.HPKEPrivateKey
	var kems, cts [][]byte
	for i, priv := range privs {
		if priv == nil {
			continue
		}
		node, ct, err := pathSecretFor(t, fdp, committer, path, priv, exclude)
		if err != nil {
			return nil, pathError(err)
		}
		at, nodes = append(at, i), append(nodes, node)
		keys, kems, cts = append(keys, priv.path.PrivateKey(node)), append(kems, ct.KEMOutput), append(cts, ct.Ciphertext)
	}
	secrets, errs := suite.DecryptAllWithLabel(p.suite.NewSealContext("UpdatePathNode", ctxBytes), keys, kems, cts)
	defer func() {
		for _, secret := range secrets {
			clear(secret)
		}
	}()
	// Members under one common ancestor share the keys above it: each
	// is derived once (treekem.PathKeys).
	pk := treekem.NewPathKeys(p.suite, t, committer, fdp)
	defer pk.Zero()
	for n, i := range at {
		if errs[n] != nil {
			return nil, pathError(fmt.Errorf("%w: node %d: %w", treekem.ErrDecrypt, nodes[n], errs[n]))
		}
		priv := privs[i]
		after, err := pk.Join(priv.path, secrets[n])
		if err != nil {
			return nil, pathError(err)
		}
		privs[i] = &Private{leaf: priv.leaf, signKey: priv.signKey, path: after.Prune(t)}
	}
	// Each join derived the chain, or found it derived, up to the last node.
	return pk.Top(), nil
}

// pathSecretFor finds the ciphertext of the path secret that path, from
// committer, carries for priv's member: that of their lowest common
// ancestor, a node of the committer's filtered direct path fdp,
// encrypted to node, the node of the ancestor's copath resolution whose
// private key priv holds. t is the tree with the path merged.
func pathSecretFor(t *tree.Tree, fdp []treemath.NodeIndex, committer treemath.LeafIndex, path *message.UpdatePath, priv *Private, exclude []treemath.LeafIndex) (node treemath.NodeIndex, ct *message.HPKECiphertext, err error) {
	ca := treemath.CommonAncestor(committer.Node(), priv.leaf.Node())
	k := slices.Index(fdp, ca)
	if k < 0 {
		return 0, nil, fmt.Errorf("%w: common ancestor %d of leaf %d is not on the committer's filtered direct path", treekem.ErrNoDecryptionKey, ca, priv.leaf)
	}
	res := t.AppendCopathResolution(nil, ca, committer, exclude)
	cts := path.Nodes[k].EncryptedPathSecret
	if len(cts) != len(res) {
		return 0, nil, fmt.Errorf("%w: %d for a resolution of %d", treekem.ErrCiphertextCount, len(cts), len(res))
	}
	j := slices.IndexFunc(res, func(x treemath.NodeIndex) bool { return priv.path.PrivateKey(x) != nil })
	if j < 0 {
		return 0, nil, fmt.Errorf("%w: leaf %d", treekem.ErrNoDecryptionKey, priv.leaf)
	}
	return res[j], &cts[j], nil
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
