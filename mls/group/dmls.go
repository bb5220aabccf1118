package group

import (
	"errors"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/pprf"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treekem"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// Decentralised MLS (draft-kohbrok-mls-dmls) support. A group created or
// joined with Config.Scheme = keyschedule.SchemeDMLS keeps, in each epoch,
// a puncturable PRF in place of init_secret, and derives each child's
// init_secret from it with the commit's commit_confirmation =
// DeriveSecret(path_secret[n], "conf"), path_secret[n] being the last path
// secret of the commit's UpdatePath. Hence:
//
//   - every commit in such a group carries an UpdatePath (we always make
//     one; a received commit without one is ErrDMLSPathRequired);
//   - making or processing a commit punctures the parent epoch's PRF in
//     place (like a secret-tree ratchet step, under the Public's mutex), so
//     the same child cannot be derived twice: processing a commit a second
//     time, or our own commit echoed back, fails (ErrOwnCommit before any
//     derivation for our own; pprf.ErrPunctured for a repeat). Callers that
//     keep several epochs (package epochs) must therefore adopt their own
//     commits with HandlePendingCommit and skip duplicates.

// ErrDMLSPathRequired rejects a commit without an UpdatePath in a DMLS
// group: it has no path_secret[n], so no commit confirmation to bind the
// child epoch's init_secret to.
var ErrDMLSPathRequired = errors.New("group: DMLS commit without update path")

// Scheme returns the group's init scheme.
func (g *Group) Scheme() keyschedule.InitScheme { return g.pub.epoch.Scheme }

func (p *Public) dmls() bool { return p.epoch.Scheme == keyschedule.SchemeDMLS }

// nextInitSecret returns the init_secret for the child that a commit with
// commit confirmation conf makes of p (nil conf under RFC 9420). Under
// DMLS it punctures p's kept PRF at once, for every Group sharing p: a
// child's secret is derived at most once however the commit's processing
// ends.
func (p *Public) nextInitSecret(conf []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	initSecret, after, err := p.epoch.NextInitSecret(keyschedule.Child{CommitConfirmation: conf, GroupContext: p.ctxBytes})
	if err != nil {
		return nil, fmt.Errorf("init secret: %w", err)
	}
	if p.dmls() {
		old := p.epoch.InitSecret
		p.epoch.InitSecret = after.InitSecret
		p.initChanges++
		clear(old)
	}
	return initSecret, nil
}

// sentConfirmation returns the commit confirmation of an UpdatePath we
// generated as the member at leaf in t (the tree the path was made for),
// or nil outside DMLS. path_secret[n] is the secret of the last node of
// our filtered direct path; PathSecretFor yields it for any leaf below
// that node's other child.
func (p *Public) sentConfirmation(t *tree.Tree, leaf treemath.LeafIndex, gen *treekem.Generated) ([]byte, error) {
	if !p.dmls() {
		return nil, nil
	}
	fdp := t.FilteredDirectPath(leaf)
	if gen == nil {
		return nil, fmt.Errorf("%w: %w", ErrDMLSPathRequired, pprf.ErrNoUpdatePath)
	}
	if len(fdp) == 0 {
		// We are the only member left (everyone else was removed): the
		// path has no node, so no path_secret[n], and commit_secret is
		// the fresh path_secret[0] of RFC 9420 §7.4. Nobody else
		// processes this commit, so the confirmation is ours to define;
		// it is derived from that fresh secret as it would be from
		// path_secret[n], keeping the child's init secret unpredictable
		// to anyone who held the parent.
		return pprf.CommitConfirmation(p.suite, gen.CommitSecret)
	}
	x := tree.CopathChild(fdp[len(fdp)-1], leaf.Node())
	for !x.IsLeaf() {
		x, _ = treemath.Left(x)
	}
	other, _ := x.Leaf()
	last := gen.PathSecretFor(other)
	defer clear(last)
	return pprf.CommitConfirmation(p.suite, last)
}

// commitConfirmation returns the commit confirmation of a received
// UpdatePath whose path_secret[n] is top, or nil outside DMLS.
func (p *Public) commitConfirmation(top []byte) ([]byte, error) {
	if !p.dmls() {
		return nil, nil
	}
	if len(top) == 0 {
		return nil, fmt.Errorf("%w: %w", ErrDMLSPathRequired, pprf.ErrNoUpdatePath)
	}
	return pprf.CommitConfirmation(p.suite, top)
}

// Destroy zeroes the secrets that belong to g's epoch alone (see
// Public.Destroy); g and every Group sharing its Public are unusable
// afterwards.
func (g *Group) Destroy() { g.pub.Destroy() }

// Destroy zeroes the secrets that belong to p's epoch alone: the epoch
// secrets and the kept init secret or PRF, and the secret tree's ratchets.
// Call it when the epoch is dropped for good (package epochs' retention);
// every Group sharing p is unusable afterwards.
//
// It leaves alone what later epochs share with this one: the
// resumption_psk (later epochs keep it among their past epochs), the
// signature keys, and the private tree keys (a child epoch's
// treekem.PrivateState shares the keys of nodes its commit did not
// replace). The secret tree is zeroed even though later states that keep
// past epochs (Config.PastEpochs) share it: once the epoch is dropped for
// good, its late messages are not to be read either.
func (p *Public) Destroy() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.secrets.mu.Lock()
	defer p.secrets.mu.Unlock()
	e := &p.epoch
	for _, b := range [][]byte{
		e.SenderDataSecret, e.EncryptionSecret, e.ExporterSecret, e.ExternalSecret,
		e.ConfirmationKey, e.MembershipKey, e.EpochAuthenticator, e.InitSecret,
	} {
		clear(b)
	}
	p.secrets.tree.Zero()
}
