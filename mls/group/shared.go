package group

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/framing"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
	"github.com/mls-appservice/mls-appservice/mls/welcome"
)

// Several of our members in one group (DESIGN §4). Under the DMLS key
// schedule an epoch derives each child once (its PRF is punctured), so a
// commit cannot be processed once per member on a shared Public: the
// second processing fails with pprf.ErrPunctured. The functions here
// process a commit once for all of them, derive the others' keys from our
// own commit, and join one more member into an epoch whose Public we hold.

// ErrWelcomeEpoch means a Welcome given to JoinPrivate for another epoch
// than the Public's.
var ErrWelcomeEpoch = errors.New("group: welcome is for another epoch")

// SharedTransition is a commit processed once for several of our members
// that share one Public.
type SharedTransition struct {
	// Public is the next epoch's shared part; nil if the commit removed
	// every member it was processed for.
	Public *Public
	// Privates holds the next private part of each member, index-aligned
	// with the members: [0] is the receiving Group's (nil if it has
	// none), [i+1] that of others[i]. An entry is nil for a member the
	// commit removed.
	Privates []*Private

	from *Group
}

// Group returns member i's state in the next epoch (i as in Privates),
// with the receiving Group's configuration and past epochs, as Handle
// would have returned it; nil if the commit removed the member.
func (t *SharedTransition) Group(i int) *Group {
	if t.Public == nil || i < 0 || i >= len(t.Privates) || t.Privates[i] == nil {
		return nil
	}
	return t.from.next(t.Public, t.Privates[i])
}

// HandleCommitShared processes a commit of g's epoch, received from
// another member or an external joiner, once for g's member and for
// others, further members of ours whose private parts belong to g's
// epoch (g may be a view without a private part, New(pub, nil, cfg)).
//
// The commit is verified, staged and its key schedule run (under DMLS,
// g's PRF punctured) exactly once. Each surviving member's private path
// keys come from its own path secret: one HPKE decryption per member, at
// its lowest common ancestor with the committer; the keys of that node and
// those above it are derived once for all members that share them
// (treekem.PathKeys). If any member cannot decrypt its path
// secret, or the commit fails any other check, the commit is refused as a
// whole and g is left as it was, PRF included; only a failure of the
// confirmation tag, found after the key schedule ran, consumes the child
// (as Handle does).
//
// Proposals by reference are resolved from g's proposal cache (DMLS
// commits carry theirs by value); an Update proposal for one of others'
// leaves cannot be applied, since only g's own Update keys are known.
// A commit by one of our members fails with ErrOwnCommit: adopt it with
// HandlePendingCommit and PendingCommit.Others.
func (g *Group) HandleCommitShared(m *message.MLSMessage, others []*Private) (*SharedTransition, error) {
	if err := g.checkOthers(others); err != nil {
		return nil, err
	}
	privs := append([]*Private{g.priv}, others...)
	if m == nil {
		return nil, fmt.Errorf("%w: no message", ErrMalformed)
	}
	o, err := g.pub.open(m)
	if err != nil {
		return nil, err
	}
	if o.ac.Content.ContentType != message.ContentCommit {
		return nil, fmt.Errorf("%w: content type %d is not a commit", ErrMalformed, o.ac.Content.ContentType)
	}
	pub, next, err := g.processCommit(o, privs)
	if err != nil {
		return nil, err
	}
	if pub == nil {
		clear(next)
	}
	return &SharedTransition{Public: pub, Privates: next, from: g}, nil
}

// PrivatesAfter derives the private parts that further members of ours
// get in next, the epoch that the commit m made from g's epoch, when
// next's Public is already held: it was made by processing m for other
// members of ours, or entered by a Welcome, before these members held
// g's epoch. It verifies and stages m as HandleCommitShared does, checks
// that m makes exactly next (the staged tree's hash, the confirmed
// transcript hash and the confirmation tag must be next's), and decrypts
// each member's path secret; it runs no key schedule, so g's PRF is not
// touched. The result is index-aligned with others; nil for a member the
// commit removes.
func (g *Group) PrivatesAfter(m *message.MLSMessage, next *Public, others []*Private) ([]*Private, error) {
	if err := g.checkOthers(others); err != nil {
		return nil, err
	}
	if m == nil || next == nil {
		return nil, fmt.Errorf("%w: no message or next epoch", ErrMalformed)
	}
	p := g.pub
	o, err := p.open(m)
	if err != nil {
		return nil, err
	}
	ac := o.ac
	if ac.Content.ContentType != message.ContentCommit {
		return nil, fmt.Errorf("%w: content type %d is not a commit", ErrMalformed, ac.Content.ContentType)
	}
	rc, err := g.receiveCommit(o, others)
	if err != nil {
		return nil, err
	}
	rc.zero()
	if rc.survivors == 0 {
		return rc.next, nil
	}
	confirmed, err := framing.ConfirmedTranscriptHash(p.suite, p.interim, ac)
	if err != nil {
		return nil, err
	}
	if next.suite != p.suite || next.ctx.Epoch != p.ctx.Epoch+1 || !bytes.Equal(next.ctx.GroupID, p.ctx.GroupID) ||
		!bytes.Equal(next.ctx.ConfirmedTranscriptHash, confirmed) || !bytes.Equal(next.confirmationTag, ac.Auth.ConfirmationTag) ||
		!bytes.Equal(next.ctx.TreeHash, rc.st.tree.RootHash()) {
		return nil, fmt.Errorf("%w: the commit does not make that epoch", ErrWrongEpoch)
	}
	return rc.next, nil
}

// checkOthers checks that others are the private parts of members of g's
// epoch, other than g's and each other: their keys must match g's tree.
func (g *Group) checkOthers(others []*Private) error {
	// A set, not a search of those before: a service can hold 10,000
	// members of one group.
	leaves := make(map[treemath.LeafIndex]bool, len(others)+1)
	if g.priv != nil {
		leaves[g.priv.leaf] = true
	}
	// They share their keys above the leaves: each node's is checked
	// once (treekem.KeyCheck).
	keys := treekem.NewKeyCheck(g.pub.tree)
	for i, o := range others {
		err := error(nil)
		switch {
		case o == nil:
			err = fmt.Errorf("%w: no private part", ErrNotMember)
		case leaves[o.leaf]:
			err = fmt.Errorf("%w: leaf %d given twice", ErrInvalidState, o.leaf)
		default:
			leaves[o.leaf] = true
			err = g.pub.checkPrivate(o, keys.Check)
		}
		if err != nil {
			return fmt.Errorf("other member %d: %w", i, err)
		}
	}
	return nil
}

// CheckPrivate reports whether priv is the private part of a member of
// p's epoch: its leaf must be a member and every key it holds must match
// p's tree. It is for a caller that stores Publics and Privates apart.
func (p *Public) CheckPrivate(priv *Private) error {
	return p.checkPrivate(priv, treekem.NewKeyCheck(p.tree).Check)
}

// CheckStoredPrivate is CheckPrivate for a private part that the caller
// sealed to its place after this package made it: its leaf must be a
// member and its keys at non-blank nodes, and its leaf key must match p's
// tree; the keys above the leaf are not derived again
// (treekem.PrivateState.CheckPlaced says why).
func (p *Public) CheckStoredPrivate(priv *Private) error {
	return p.checkPrivate(priv, func(s *treekem.PrivateState) error { return s.CheckPlaced(p.tree) })
}

func (p *Public) checkPrivate(priv *Private, check func(*treekem.PrivateState) error) error {
	if priv.path.Suite() != p.suite {
		return fmt.Errorf("%w: private part of another cipher suite", ErrInvalidState)
	}
	if err := check(priv.path); err != nil {
		return fmt.Errorf("%w: private part not of this epoch: %w", ErrNotMember, err)
	}
	return nil
}

// othersAfter returns the next private parts of our other members (see
// CommitOptions.Others) after our commit staged as st, whose path, if
// any, is gen with its keys pk: nil for a member the commit removes, and
// for the others the keys of our path above them (no HPKE, no
// derivation: pk holds them).
func (g *Group) othersAfter(others []*Private, st *staged, gen *treekem.Generated, pk *treekem.PathKeys) ([]*Private, error) {
	out := make([]*Private, len(others))
	for i, o := range others {
		if slices.Contains(st.removed, o.leaf) {
			continue
		}
		if _, ok := st.updated[o.leaf]; ok {
			return nil, fmt.Errorf("%w: leaf %d of our member %d was updated by a proposal", ErrInvalidUpdate, o.leaf, i)
		}
		if gen == nil {
			// A commit without a path only adds members: no key of
			// ours changes.
			out[i] = o
			continue
		}
		keys, err := joinPath(pk, gen, o.path)
		if err != nil {
			return nil, fmt.Errorf("member %d: %w", i, err)
		}
		out[i] = &Private{leaf: o.leaf, signKey: o.signKey, path: keys.Prune(st.tree)}
	}
	return out, nil
}

// joinPath returns p with the keys of gen's path above it, taken from pk,
// gen's PathKeys.
func joinPath(pk *treekem.PathKeys, gen *treekem.Generated, p *treekem.PrivateState) (*treekem.PrivateState, error) {
	secret := gen.PathSecretFor(p.Leaf())
	if secret == nil {
		return nil, fmt.Errorf("%w: no path secret for leaf %d", treekem.ErrNoDecryptionKey, p.Leaf())
	}
	defer clear(secret)
	return pk.Join(p, secret)
}

// joinersAfter returns the private parts, in the epoch that our commit
// staged as st makes, of the members it adds whose bundles are joiners:
// each one's leaf key, and above it the keys of our path from its common
// ancestor with the committer's leaf up, those that the path secret its
// Welcome would carry derives (taken from pk, gen's PathKeys).
func joinersAfter(joiners []*KeyPackageBundle, st *staged, gen *treekem.Generated, pk *treekem.PathKeys) ([]*Private, error) {
	leaves := make(map[string]treemath.LeafIndex, len(st.adds))
	for _, a := range st.adds {
		leaves[string(codec.Marshal(a.keyPackage))] = a.leaf
	}
	out := make([]*Private, len(joiners))
	for i, kp := range joiners {
		if kp == nil {
			return nil, fmt.Errorf("%w: joiner %d: no KeyPackage", ErrInvalidState, i)
		}
		if err := kp.Check(); err != nil {
			return nil, fmt.Errorf("joiner %d: %w", i, err)
		}
		enc := string(codec.Marshal(&kp.KeyPackage))
		leaf, ok := leaves[enc]
		if !ok {
			return nil, fmt.Errorf("%w: joiner %d: the commit does not add its KeyPackage (or it is given twice)", ErrInvalidState, i)
		}
		delete(leaves, enc)
		path := treekem.NewPrivateState(leaf, kp.EncryptionKey)
		if gen != nil {
			keys, err := joinPath(pk, gen, path)
			if err != nil {
				return nil, fmt.Errorf("joiner %d at leaf %d: %w", i, leaf, err)
			}
			path = keys
		}
		out[i] = NewPrivate(leaf, kp.SignatureKey, path)
	}
	return out, nil
}

// notJoining returns the adds whose leaves none of joiners holds: the
// members the Welcome is for.
func notJoining(adds []added, joiners []*Private) []added {
	leaves := make(map[treemath.LeafIndex]bool, len(joiners))
	for _, j := range joiners {
		leaves[j.leaf] = true
	}
	var out []added
	for _, a := range adds {
		if !leaves[a.leaf] {
			out = append(out, a)
		}
	}
	return out
}

// JoinPrivate is Join for a member whose epoch we already hold: another
// of our members is in it and pub is its Public. It opens the Welcome for
// kp and checks that it is for exactly pub's epoch (the GroupContext and
// confirmation tag of its GroupInfo, and the epoch authenticator that its
// joiner secret derives, must be pub's; its signer must be a member of
// pub's tree), then derives the new member's private path keys from the
// path secret. It neither builds a Public nor validates the tree again:
// pub was validated when it was made.
func JoinPrivate(pub *Public, welcomeMsg []byte, kp *KeyPackageBundle, o *JoinOptions) (*Private, error) {
	w, err := welcome.Parse(welcomeMsg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := kp.Check(); err != nil {
		return nil, err
	}
	if o == nil {
		o = &JoinOptions{}
	}
	signerKey := func(gi *message.GroupInfo) ([]byte, error) {
		if l := pub.tree.Leaf(treemath.LeafIndex(gi.Signer)); l != nil {
			return l.SignatureKey, nil
		}
		return nil, fmt.Errorf("%w: signer leaf %d is not a member of the epoch", ErrWelcomeEpoch, gi.Signer)
	}
	joined, err := openWelcome(w, kp, signerKey, o.Config, pub.epoch.Scheme)
	if err != nil {
		return nil, err
	}
	defer joined.Epoch.Zero()
	defer clear(joined.GroupSecrets.PathSecret)
	gi := &joined.GroupInfo
	if !bytes.Equal(codec.Marshal(&gi.GroupContext), pub.ctxBytes) || !bytes.Equal(gi.ConfirmationTag, pub.confirmationTag) ||
		subtle.ConstantTimeCompare(joined.Epoch.EpochAuthenticator, pub.epoch.EpochAuthenticator) != 1 {
		return nil, fmt.Errorf("%w: epoch %d of group %x", ErrWelcomeEpoch, gi.GroupContext.Epoch, gi.GroupContext.GroupID)
	}
	return joinedPrivate(pub.tree, joined, kp)
}
