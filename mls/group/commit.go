package group

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// CommitOptions control Commit. The zero value commits every proposal
// cached in the epoch, by reference, with a path only when one is
// required, and makes a Welcome whose GroupInfo carries the ratchet tree.
type CommitOptions struct {
	// Proposals are committed by value, after the cached ones.
	Proposals []*message.Proposal
	// ProposalRefs, if non-nil, names the cached proposals to commit by
	// reference, in this order, instead of all of them; an empty non-nil
	// slice commits none. The choice is validated (§12.2), not filtered:
	// a ref not cached in the epoch fails with ErrUnknownProposalRef and
	// an invalid list with the sentinel of the rule it breaks.
	ProposalRefs [][]byte
	// SkipPending leaves the cached proposals out. It cannot be combined
	// with ProposalRefs.
	SkipPending bool
	// ForcePath includes an UpdatePath even when none is required.
	ForcePath bool
	// WireFormat overrides the configured handshake wire format.
	WireFormat message.WireFormat
	// AuthenticatedData is the commit's authenticated_data.
	AuthenticatedData []byte
	// OmitRatchetTree leaves the ratchet_tree extension out of the
	// Welcome's GroupInfo; the joiners then need the tree out of band.
	OmitRatchetTree bool
	// ExternalPub adds the external_pub extension to the GroupInfo.
	ExternalPub bool
	// Others are the private parts of further members of ours in the
	// group, sharing the committer's Public (DESIGN §4). Their private
	// parts in the new epoch are derived from the path secrets the
	// commit generates, with no HPKE, and returned in
	// PendingCommit.Others.
	Others []*Private
	// Joiners are the KeyPackageBundles of members the commit adds that
	// are ours as well (their KeyPackages among the Add proposals). Their
	// private parts in the new epoch are derived as the Others' are,
	// from the path secrets the commit generates, and returned in
	// PendingCommit.Joiners, and the Welcome leaves them out (none is
	// made if the commit adds no one else). Opening it would cost each
	// joiner the whole GroupInfo with its ratchet tree (about 100 ms a
	// joiner at 10,000 members), and sealing their group secrets an HPKE
	// encapsulation each for a Welcome no one would open.
	Joiners []*KeyPackageBundle

	// allowUsage admits a reinit or branch resumption PSK (§11.2, §11.3).
	allowUsage message.ResumptionPSKUsage
}

// PendingCommit is a commit we made and have not yet adopted: the
// caller sends Commit (and Welcome to the new members), and once the
// delivery service has accepted the commit adopts the new state with
// HandlePendingCommit, or else drops it.
type PendingCommit struct {
	// Commit is the encoded MLSMessage carrying the commit.
	Commit []byte
	// Welcome is the encoded MLSMessage carrying the Welcome, or nil if
	// the commit adds nobody but CommitOptions.Joiners.
	Welcome []byte
	// GroupInfo is the signed GroupInfo of the new epoch that Welcome
	// carries; nil when there is no Welcome (State().GroupInfo makes one
	// on demand, so that a commit in a large group does not encode the
	// whole tree for nothing).
	GroupInfo *message.GroupInfo

	// Others are the next private parts of CommitOptions.Others,
	// index-aligned; nil for a member the commit removes.
	Others []*Private
	// Joiners are the private parts of CommitOptions.Joiners in the new
	// epoch, index-aligned.
	Joiners []*Private

	base *Public
	next *Group
}

// State returns the state the commit leads to, for callers that adopt it
// without a base state (an external join).
func (pc *PendingCommit) State() *Group { return pc.next }

// HandlePendingCommit adopts a commit that g made. g is left unchanged.
func (g *Group) HandlePendingCommit(pc *PendingCommit) (*Group, error) {
	if pc == nil || pc.base != g.pub {
		return nil, ErrStalePendingCommit
	}
	return pc.next, nil
}

// Commit makes a commit of the cached proposals (all of them, or those
// o.ProposalRefs names) and o.Proposals (§12.4).
// g is not changed, except that a PrivateMessage commit consumes a
// generation of our handshake ratchet.
func (g *Group) Commit(o CommitOptions) (*PendingCommit, error) {
	if err := g.requireMember(); err != nil {
		return nil, err
	}
	p, s := g.pub, g.pub.suite
	me := message.MemberSender(uint32(g.priv.leaf))
	props, refs, err := g.proposalsToCommit(o)
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if err := g.checkOthers(o.Others); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	st, err := p.stage(props, me, &g.cfg, stageOptions{allowUsage: o.allowUsage})
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	commit := &message.Commit{Proposals: refs}
	newPath := g.priv.path
	var gen *treekem.Generated
	if o.ForcePath || st.pathRequired || p.dmls() {
		leaf := *st.tree.Leaf(g.priv.leaf)
		gen, err = g.priv.path.Generate(st.tree, leaf, g.priv.signKey, treekem.PathOptions{GroupContext: p.provisionalContext(st), Exclude: st.excluded()})
		if err != nil {
			return nil, fmt.Errorf("commit: update path: %w", err)
		}
		defer gen.Zero()
		commit.Path = gen.Path
		newPath = gen.Private
	}
	// The others' keys are derived before the key schedule punctures
	// the base's PRF (DMLS), so that a failure here consumes nothing.
	var pk *treekem.PathKeys
	if gen != nil {
		pk = gen.PathKeys(st.tree)
		defer pk.Zero()
	}
	var others []*Private
	if len(o.Others) > 0 {
		if others, err = g.othersAfter(o.Others, st, gen, pk); err != nil {
			return nil, fmt.Errorf("commit: %w", err)
		}
	}
	var joiners []*Private
	welcomed := st.adds
	if len(o.Joiners) > 0 {
		if joiners, err = joinersAfter(o.Joiners, st, gen, pk); err != nil {
			return nil, fmt.Errorf("commit: %w", err)
		}
		welcomed = notJoining(st.adds, joiners)
	}
	wf := o.WireFormat
	if wf == 0 {
		wf = g.cfg.wireFormat()
	}
	content := g.content(message.ContentCommit, o.AuthenticatedData)
	content.Commit = commit
	ac, err := framing.Sign(g.priv.signKey, wf, &content, &p.ctx)
	if err != nil {
		return nil, err
	}
	var commitSecret []byte
	if gen != nil {
		commitSecret = gen.CommitSecret
	}
	conf, err := p.sentConfirmation(st.tree, g.priv.leaf, gen)
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	adv, err := p.advance(st, ac, commitSecret, nil, conf, g.lookupPSK)
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	defer adv.zero()
	tag, err := adv.derived.Epoch.ConfirmationTag(adv.ctx.ConfirmedTranscriptHash)
	if err != nil {
		return nil, err
	}
	ac.Auth.ConfirmationTag = tag
	msg, _, err := g.protectSigned(ac)
	if err != nil {
		return nil, fmt.Errorf("commit: protect: %w", err)
	}
	newPub, err := newPublic(s, adv.ctx, st.tree, tag, adv.derived.Epoch, g.cfg.SecretTree)
	if err != nil {
		return nil, err
	}
	newPub.reinit = st.reinit
	next := g.next(newPub, &Private{leaf: g.priv.leaf, signKey: g.priv.signKey, path: newPath})
	pc := &PendingCommit{Commit: codec.Marshal(msg), Others: others, Joiners: joiners, base: p, next: next}
	if len(welcomed) > 0 {
		pc.GroupInfo, err = next.groupInfo(GroupInfoOptions{RatchetTree: !o.OmitRatchetTree, ExternalPub: o.ExternalPub})
		if err != nil {
			return nil, err
		}
		pathSecret := func(treemath.LeafIndex) []byte { return nil }
		if gen != nil {
			pathSecret = gen.PathSecretFor
		}
		w, err := buildWelcome(s, pc.GroupInfo, &adv.derived, st.psks, welcomed, pathSecret)
		if err != nil {
			return nil, fmt.Errorf("commit: welcome: %w", err)
		}
		pc.Welcome = codec.Marshal(&message.MLSMessage{Version: message.MLS10, WireFormat: message.WireFormatWelcome, Welcome: w})
	}
	return pc, nil
}

// errConflictingChoice is a caller's mistake, not a rejection of
// anything received, so it has no exported sentinel.
var errConflictingChoice = errors.New("group: CommitOptions.SkipPending and ProposalRefs both set")

// proposalsToCommit lists the proposals of a commit of ours: the cached
// ones the caller named, or else those §12.2's SHOULDs pick, followed by
// the by-value ones.
func (g *Group) proposalsToCommit(o CommitOptions) ([]resolved, []message.ProposalOrRef, error) {
	var chosen []cachedProposal
	switch {
	case o.ProposalRefs != nil && o.SkipPending:
		return nil, nil, errConflictingChoice
	case o.ProposalRefs != nil:
		for _, ref := range o.ProposalRefs {
			c, ok := g.local.find(ref)
			if !ok {
				return nil, nil, fmt.Errorf("%w: %x", ErrUnknownProposalRef, ref)
			}
			chosen = append(chosen, c)
		}
	case !o.SkipPending:
		cached, _ := g.local.snapshot()
		chosen = g.preferred(cached, len(o.Proposals) > 0)
	}
	me := message.MemberSender(uint32(g.priv.leaf))
	props := make([]resolved, 0, len(chosen)+len(o.Proposals))
	refs := make([]message.ProposalOrRef, 0, len(chosen)+len(o.Proposals))
	for _, c := range chosen {
		props = append(props, resolved{proposal: c.proposal, sender: c.sender, ref: c.ref})
		refs = append(refs, message.ProposalOrRef{Type: message.ProposalOrRefReference, Reference: c.ref})
	}
	for _, p := range o.Proposals {
		props = append(props, resolved{proposal: p, sender: me})
		refs = append(refs, message.ProposalOrRef{Type: message.ProposalOrRefProposal, Proposal: p})
	}
	return props, refs, nil
}

// preferred picks the cached proposals a commit of ours includes when the
// caller names none (§12.2's SHOULDs: prefer Removes, then the latest
// Update, drop what we cannot commit). byValue reports that proposals by
// value follow, which rules out a ReInit.
func (g *Group) preferred(cached []cachedProposal, byValue bool) []cachedProposal {
	me := uint32(g.priv.leaf)
	removed := map[uint32]bool{}
	for _, c := range cached {
		if c.proposal.Type == message.ProposalRemove {
			removed[c.proposal.Remove.Removed] = true
		}
	}
	lastUpdate := map[uint32]int{}
	for i, c := range cached {
		if c.proposal.Type == message.ProposalUpdate && c.sender.Type == message.SenderMember {
			lastUpdate[c.sender.LeafIndex] = i
		}
	}
	var out []cachedProposal
	seenRemove := map[uint32]bool{}
	var psks [][]byte
	gce := false
	for i, c := range cached {
		switch c.proposal.Type {
		case message.ProposalUpdate:
			l := c.sender.LeafIndex
			if l == me || removed[l] || lastUpdate[l] != i {
				continue
			}
		case message.ProposalRemove:
			l := c.proposal.Remove.Removed
			if l == me || seenRemove[l] || g.pub.tree.Leaf(treemath.LeafIndex(l)) == nil {
				continue
			}
			seenRemove[l] = true
		case message.ProposalPreSharedKey:
			id := codec.Marshal(&c.proposal.PreSharedKey.PSK)
			dup := false
			for _, b := range psks {
				dup = dup || bytes.Equal(b, id)
			}
			if dup {
				continue
			}
			psks = append(psks, id)
		case message.ProposalGroupContextExtensions:
			if gce {
				continue
			}
			gce = true
		case message.ProposalReInit:
			if len(cached) > 1 || byValue {
				continue
			}
		case message.ProposalExternalInit:
			continue
		}
		out = append(out, c)
	}
	return out
}

// advanced is the outcome of the key schedule for a commit.
type advanced struct {
	ctx     message.GroupContext
	derived keyschedule.Derived
}

func (a *advanced) zero() {
	clear(a.derived.JoinerSecret)
	clear(a.derived.WelcomeSecret)
}

// advance computes the new GroupContext and runs the key schedule for the
// signed commit ac on staged proposals st (§12.4.2). initSecret is the
// external init secret for an external commit, nil otherwise; conf is the
// commit confirmation under DMLS (see dmls.go), nil otherwise.
func (p *Public) advance(st *staged, ac *message.AuthenticatedContent, commitSecret, initSecret, conf []byte, lookup func(*message.PreSharedKeyID) ([]byte, error)) (*advanced, error) {
	s := p.suite
	confirmed, err := framing.ConfirmedTranscriptHash(s, p.interim, ac)
	if err != nil {
		return nil, err
	}
	ctx := p.provisionalContext(st)
	ctx.TreeHash = st.tree.RootHash()
	ctx.ConfirmedTranscriptHash = confirmed
	if initSecret == nil {
		initSecret, err = p.nextInitSecret(conf)
		if err != nil {
			return nil, err
		}
	}
	psk, err := pskSecret(s, st.psks, lookup)
	if err != nil {
		return nil, err
	}
	d, err := keyschedule.Derive(s, keyschedule.Input{
		InitSecret: initSecret, CommitSecret: commitSecret, PSKSecret: psk,
		GroupContext: codec.Marshal(&ctx), Scheme: p.epoch.Scheme,
	})
	if err != nil {
		return nil, err
	}
	return &advanced{ctx: ctx, derived: d}, nil
}
