package group

import (
	"bytes"
	"crypto/subtle"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// Reinitialisation (§11.2) and subgroup branching (§11.3) both start a new
// group whose first commit injects a resumption PSK of the old group, so
// that the new group's key schedule is bound to the old one.

// ReInit starts the successor of a group whose last commit carried a
// ReInit proposal (g.Public().ReInit() != nil): a new group with the
// proposal's parameters, with us (kp, which must be in the new suite)
// and the members whose KeyPackages are given, at epoch 1, with the
// reinit resumption PSK of g's epoch. The PendingCommit's Welcome goes to
// the other members; its State is our state in the new group.
func (g *Group) ReInit(kp *KeyPackageBundle, members []*message.KeyPackage) (*PendingCommit, error) {
	ri := g.pub.reinit
	if ri == nil {
		return nil, fmt.Errorf("%w: the last commit carried no ReInit", ErrInvalidProposal)
	}
	if g.priv == nil {
		return nil, ErrNotMember
	}
	if kp.KeyPackage.CipherSuite != ri.CipherSuite {
		return nil, fmt.Errorf("%w: key package suite %d, reinit suite %d", ErrInvalidKeyPackage, kp.KeyPackage.CipherSuite, ri.CipherSuite)
	}
	return g.successor(ri.GroupID, ri.Extensions, kp, members, message.ResumptionReInit)
}

// Branch starts a subgroup (§11.3) with the given group ID and extensions,
// with us (kp, in g's suite) and the members whose KeyPackages are given,
// bound to g's current epoch by a branch resumption PSK.
func (g *Group) Branch(groupID []byte, extensions []message.Extension, kp *KeyPackageBundle, members []*message.KeyPackage) (*PendingCommit, error) {
	if err := g.requireMember(); err != nil {
		return nil, err
	}
	if kp.KeyPackage.CipherSuite != g.pub.ctx.CipherSuite {
		return nil, fmt.Errorf("%w: branch must keep the suite", ErrInvalidKeyPackage)
	}
	return g.successor(groupID, extensions, kp, members, message.ResumptionBranch)
}

func (g *Group) successor(groupID []byte, exts []message.Extension, kp *KeyPackageBundle, members []*message.KeyPackage, usage message.ResumptionPSKUsage) (*PendingCommit, error) {
	cfg := g.cfg
	store := NewPSKStore()
	if cfg.PSKs != nil {
		cfg.PSKs.mu.RLock()
		for k, v := range cfg.PSKs.external {
			store.external[k] = v
		}
		for k, v := range cfg.PSKs.resumption {
			store.resumption[k] = v
		}
		cfg.PSKs.mu.RUnlock()
	}
	store.AddResumptionFrom(g)
	cfg.PSKs = store
	ng, err := Create(kp, groupID, exts, cfg)
	if err != nil {
		return nil, err
	}
	// The PSK is injected into the new group, so its nonce has the new
	// suite's KDF.Nh (§8.4, §12.1.4), which a ReInit may change.
	id, err := ResumptionPSKID(ng.pub.suite, usage, g.GroupID(), g.Epoch())
	if err != nil {
		return nil, err
	}
	props := []*message.Proposal{PSKProposal(id)}
	for _, m := range members {
		props = append(props, AddProposal(m))
	}
	pc, err := ng.Commit(CommitOptions{Proposals: props, ForcePath: true, allowUsage: usage})
	if err != nil {
		return nil, err
	}
	pc.next = pc.next.WithConfig(g.cfg)
	return pc, nil
}

// CheckReInit verifies what §11.2 and §12.4.3.1 ask of a group joined
// with a reinit PSK: the old group's last commit carried a ReInit matching
// the new group's parameters, the new group is at epoch 1, the Welcome
// injected the reinit resumption PSK of old's epoch (see WelcomePSKs; g
// must be the state Join returned, with the PSK store it was given), and
// its members are the old group's members (§11.2: "the same
// membership"). old is the old group's state after that commit. Members
// are compared by the client identity of their credentials
// (Config.ClientIdentity of g), not by signature key: every member joins
// the new group with a fresh KeyPackage, in a new suite perhaps.
func (g *Group) CheckReInit(old *Group) error {
	ri := old.pub.reinit
	ctx := g.pub.ctx
	if ri == nil || !bytes.Equal(ri.GroupID, ctx.GroupID) || ri.Version != ctx.Version || ri.CipherSuite != ctx.CipherSuite ||
		!bytes.Equal(codec.Marshal(&message.GroupContextExtensions{Extensions: ri.Extensions}), codec.Marshal(&message.GroupContextExtensions{Extensions: ctx.Extensions})) {
		return fmt.Errorf("%w: new group does not match the ReInit proposal", ErrInvalidWelcome)
	}
	if ctx.Epoch != 1 {
		return fmt.Errorf("%w: reinitialised group at epoch %d, not 1", ErrInvalidWelcome, ctx.Epoch)
	}
	if err := g.checkResumptionPSK(old, message.ResumptionReInit); err != nil {
		return err
	}
	return g.checkMembersFrom(old, true)
}

// CheckBranch verifies what §11.3 and §12.4.3.1 ask of a group joined
// with a branch PSK: same version and suite as the old group, epoch 1, the
// branch resumption PSK of old's current epoch (as in CheckReInit), and
// members that were all members of the old group, compared by client
// identity as in CheckReInit.
func (g *Group) CheckBranch(old *Group) error {
	if g.pub.ctx.Version != old.pub.ctx.Version || g.pub.ctx.CipherSuite != old.pub.ctx.CipherSuite {
		return fmt.Errorf("%w: branch changes version or suite", ErrInvalidWelcome)
	}
	if e := g.pub.ctx.Epoch; e != 1 {
		return fmt.Errorf("%w: branch group at epoch %d, not 1", ErrInvalidWelcome, e)
	}
	if err := g.checkResumptionPSK(old, message.ResumptionBranch); err != nil {
		return err
	}
	return g.checkMembersFrom(old, false)
}

// checkResumptionPSK checks that the Welcome g was joined from carried a
// resumption PSK of the given usage for old's group and current epoch,
// and that the value the join injected under that ID (taken from g's
// Config.PSKs) is old's resumption_psk: the ID alone names only a group
// ID and epoch number, which forks of a group share (DESIGN §5).
func (g *Group) checkResumptionPSK(old *Group, usage message.ResumptionPSKUsage) error {
	if g.welcomePSKs == nil {
		return fmt.Errorf("%w: %w: state was not joined from a Welcome", ErrInvalidWelcome, ErrResumptionPSK)
	}
	for i := range g.welcomePSKs {
		id := &g.welcomePSKs[i]
		if id.Type != message.PSKResumption || id.Usage != usage || !bytes.Equal(id.GroupID, old.GroupID()) || id.Epoch != old.Epoch() {
			continue
		}
		used, ok := g.cfg.PSKs.lookup(id)
		if !ok || subtle.ConstantTimeCompare(used, old.pub.epoch.ResumptionPSK) != 1 {
			return fmt.Errorf("%w: %w: the PSK injected is not the old group's", ErrInvalidWelcome, ErrResumptionPSK)
		}
		return nil
	}
	return fmt.Errorf("%w: %w: no %s PSK for group %x epoch %d", ErrInvalidWelcome, ErrResumptionPSK, usageName(usage), old.GroupID(), old.Epoch())
}

func usageName(u message.ResumptionPSKUsage) string {
	if u == message.ResumptionReInit {
		return "reinit"
	}
	return "branch"
}

// checkMembersFrom checks that every member of g is a member of old and,
// with all set, the reverse, by client identity.
func (g *Group) checkMembersFrom(old *Group, all bool) error {
	id := g.cfg.clientIdentity
	oldIDs := map[string]bool{}
	old.Members(func(_ uint32, n *message.LeafNode) bool {
		oldIDs[string(id(&n.Credential))] = true
		return true
	})
	newIDs := map[string]bool{}
	var err error
	g.Members(func(l uint32, n *message.LeafNode) bool {
		k := string(id(&n.Credential))
		newIDs[k] = true
		if !oldIDs[k] {
			err = fmt.Errorf("%w: %w: member at leaf %d was not in the old group", ErrInvalidWelcome, ErrMemberMismatch, l)
		}
		return err == nil
	})
	if err != nil || !all {
		return err
	}
	old.Members(func(l uint32, n *message.LeafNode) bool {
		if !newIDs[string(id(&n.Credential))] {
			err = fmt.Errorf("%w: %w: member at leaf %d of the old group is missing", ErrInvalidWelcome, ErrMemberMismatch, l)
		}
		return err == nil
	})
	return err
}
