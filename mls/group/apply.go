package group

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// resolved is one proposal of a commit with the sender that proposed it.
type resolved struct {
	proposal *message.Proposal
	sender   message.Sender
	ref      []byte // nil for a proposal by value
}

// added is a member that a commit adds.
type added struct {
	leaf       treemath.LeafIndex
	keyPackage *message.KeyPackage
}

// staged is the state between applying a commit's proposals and merging
// its path: the new tree and extensions and what the key schedule needs.
type staged struct {
	tree         *tree.Tree
	extensions   []message.Extension
	adds         []added
	psks         []message.PreSharedKeyID
	externalInit *message.ExternalInit
	reinit       *message.ReInit
	// updated maps leaves whose Update was applied to the proposal ref.
	updated      map[treemath.LeafIndex][]byte
	removed      []treemath.LeafIndex
	pathRequired bool
}

// pathRequiredType reports whether a proposal type obliges its commit to
// carry a path (§12.4).
func pathRequiredType(t message.ProposalType) bool {
	switch t {
	case message.ProposalAdd, message.ProposalPreSharedKey, message.ProposalReInit:
		return false
	}
	return true
}

// validateList applies §12.2's rules on the list as a whole.
func (p *Public) validateList(props []resolved, committer message.Sender) error {
	external := committer.Type == message.SenderNewMemberCommit
	if external {
		return validateExternalList(props)
	}
	me := committer.LeafIndex
	targets := map[uint32]bool{}
	var psks [][]byte
	gce, reinit := 0, 0
	for _, r := range props {
		switch r.proposal.Type {
		case message.ProposalUpdate:
			if r.sender.Type != message.SenderMember {
				return fmt.Errorf("%w: update from sender type %d", ErrInvalidProposal, r.sender.Type)
			}
			if r.sender.LeafIndex == me {
				return fmt.Errorf("%w: %w: update of leaf %d", ErrInvalidProposalList, ErrCommitterUpdate, me)
			}
			if targets[r.sender.LeafIndex] {
				return fmt.Errorf("%w: %w: leaf %d", ErrInvalidProposalList, ErrDuplicateTarget, r.sender.LeafIndex)
			}
			targets[r.sender.LeafIndex] = true
		case message.ProposalRemove:
			l := r.proposal.Remove.Removed
			if l == me {
				return fmt.Errorf("%w: %w: remove of leaf %d", ErrInvalidProposalList, ErrCommitterUpdate, me)
			}
			if p.tree.Leaf(treemath.LeafIndex(l)) == nil {
				return fmt.Errorf("%w: %w: leaf %d", ErrInvalidProposalList, ErrRemoveBlankLeaf, l)
			}
			if targets[l] {
				return fmt.Errorf("%w: %w: leaf %d", ErrInvalidProposalList, ErrDuplicateTarget, l)
			}
			targets[l] = true
		case message.ProposalPreSharedKey:
			id := codec.Marshal(&r.proposal.PreSharedKey.PSK)
			if slices.ContainsFunc(psks, func(b []byte) bool { return bytes.Equal(b, id) }) {
				return fmt.Errorf("%w: PSK proposed twice", ErrInvalidProposalList)
			}
			psks = append(psks, id)
		case message.ProposalGroupContextExtensions:
			gce++
		case message.ProposalReInit:
			reinit++
		case message.ProposalExternalInit:
			return fmt.Errorf("%w: external init in a member's commit", ErrInvalidProposalList)
		}
	}
	if gce > 1 {
		return fmt.Errorf("%w: %d group context extensions proposals", ErrInvalidProposalList, gce)
	}
	if reinit > 0 && len(props) > 1 {
		return fmt.Errorf("%w: reinit together with other proposals", ErrInvalidProposalList)
	}
	return nil
}

func validateExternalList(props []resolved) error {
	inits, removes := 0, 0
	for _, r := range props {
		if r.ref != nil {
			return fmt.Errorf("%w: proposal by reference", ErrInvalidExternalCommit)
		}
		switch r.proposal.Type {
		case message.ProposalExternalInit:
			inits++
		case message.ProposalRemove:
			removes++
		case message.ProposalPreSharedKey:
		default:
			return fmt.Errorf("%w: proposal type %d", ErrInvalidExternalCommit, r.proposal.Type)
		}
	}
	if inits != 1 || removes > 1 {
		return fmt.Errorf("%w: %d external inits, %d removes", ErrInvalidExternalCommit, inits, removes)
	}
	return nil
}

// stageOptions modify proposal validation for the special commits of
// reinitialisation and branching.
type stageOptions struct {
	allowUsage message.ResumptionPSKUsage // reinit or branch PSK allowed
}

// stage validates props (§12.2) and applies them (§12.3) to a copy of the
// tree; p is not modified.
func (p *Public) stage(props []resolved, committer message.Sender, cfg *Config, o stageOptions) (*staged, error) {
	if err := p.validateList(props, committer); err != nil {
		return nil, err
	}
	s := p.suite
	st := &staged{tree: p.tree.Clone(), extensions: p.ctx.Extensions, updated: map[treemath.LeafIndex][]byte{}}
	st.pathRequired = len(props) == 0
	for _, r := range props {
		st.pathRequired = st.pathRequired || pathRequiredType(r.proposal.Type)
		if r.proposal.Type == message.ProposalGroupContextExtensions {
			st.extensions = r.proposal.GroupContextExtensions.Extensions
		}
	}
	required := requiredCapabilities(st.extensions)
	credTypes := p.tree.CredentialTypes()
	t := st.tree
	for _, r := range props {
		if r.proposal.Type != message.ProposalUpdate {
			continue
		}
		l := treemath.LeafIndex(r.sender.LeafIndex)
		leaf := &r.proposal.Update.LeafNode
		if t.Leaf(l) == nil {
			return nil, fmt.Errorf("%w: update from blank leaf %d", ErrInvalidProposal, l)
		}
		if err := tree.ValidateLeafNode(s, leaf, tree.LeafContext{
			GroupID: p.ctx.GroupID, LeafIndex: l, Source: message.LeafNodeSourceUpdate,
			Version: p.ctx.Version, Required: required, CredentialTypes: credTypes,
		}); err != nil {
			return nil, fmt.Errorf("%w: leaf %d: %w", ErrInvalidUpdate, l, err)
		}
		if err := t.CheckNewLeaf(l, leaf); err != nil {
			return nil, fmt.Errorf("%w: leaf %d: %w", ErrInvalidUpdate, l, err)
		}
		if err := t.UpdateLeaf(l, leaf); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidUpdate, err)
		}
		st.updated[l] = r.ref
	}
	for _, r := range props {
		if r.proposal.Type != message.ProposalRemove {
			continue
		}
		l := treemath.LeafIndex(r.proposal.Remove.Removed)
		if err := t.RemoveLeaf(l); err != nil {
			return nil, fmt.Errorf("%w: %w: %w", ErrInvalidProposalList, ErrRemoveBlankLeaf, err)
		}
		st.removed = append(st.removed, l)
	}
	if err := st.applyAdds(p, props, required, credTypes, cfg); err != nil {
		return nil, err
	}
	for _, r := range props {
		switch r.proposal.Type {
		case message.ProposalPreSharedKey:
			id := r.proposal.PreSharedKey.PSK
			if err := checkPSKID(p, &id, o.allowUsage); err != nil {
				return nil, err
			}
			st.psks = append(st.psks, id)
		case message.ProposalExternalInit:
			st.externalInit = r.proposal.ExternalInit
		case message.ProposalReInit:
			if r.proposal.ReInit.Version < p.ctx.Version {
				return nil, fmt.Errorf("%w: reinit to version %d", ErrInvalidProposal, r.proposal.ReInit.Version)
			}
			st.reinit = r.proposal.ReInit
		case message.ProposalGroupContextExtensions:
			if err := checkMembersSupport(t, st.extensions); err != nil {
				return nil, err
			}
		}
	}
	return st, nil
}

// applyAdds validates the KeyPackages of the Add proposals against the
// tree after updates and removes and adds them in list order.
func (st *staged) applyAdds(p *Public, props []resolved, required *message.RequiredCapabilities, credTypes []message.CredentialType, cfg *Config) error {
	s := p.suite
	t := st.tree
	for _, r := range props {
		if r.proposal.Type != message.ProposalAdd {
			continue
		}
		kp := &r.proposal.Add.KeyPackage
		lc := tree.LeafContext{Version: p.ctx.Version, Required: required, CredentialTypes: credTypes}
		if now := cfg.now(); !now.IsZero() {
			lc.Now = now
		}
		if err := tree.ValidateKeyPackage(s, kp, lc); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
		}
		if err := leafSupportsExtensions(&kp.LeafNode, st.extensions); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidKeyPackage, err)
		}
		// The tree's key index and member stats include the members
		// added earlier in the list.
		leaf := &kp.LeafNode
		if _, dup := t.LeafWithSignatureKey(leaf.SignatureKey); dup {
			return fmt.Errorf("%w: %w: signature key already in the group", ErrInvalidProposalList, ErrDuplicateAdd)
		}
		_, dupEnc := t.NodeWithEncryptionKey(leaf.EncryptionKey)
		_, dupInit := t.NodeWithEncryptionKey(kp.InitKey)
		if dupEnc || dupInit {
			return fmt.Errorf("%w: %w: encryption key already in the tree", ErrInvalidKeyPackage, tree.ErrDuplicateKey)
		}
		if !t.SupportedByAllMembers(leaf.Credential.Type) {
			return fmt.Errorf("%w: credential type %d", ErrUnsupported, leaf.Credential.Type)
		}
		l, err := t.AddLeaf(leaf)
		if err != nil {
			return err
		}
		st.adds = append(st.adds, added{leaf: l, keyPackage: kp})
	}
	return nil
}

// checkPSKID applies §12.1.4 to a PreSharedKey proposal.
func checkPSKID(p *Public, id *message.PreSharedKeyID, allow message.ResumptionPSKUsage) error {
	if len(id.Nonce) != p.suite.HashSize() {
		return fmt.Errorf("%w: psk nonce of %d bytes", ErrInvalidProposal, len(id.Nonce))
	}
	if id.Type == message.PSKResumption && id.Usage != message.ResumptionApplication && id.Usage != allow {
		return fmt.Errorf("%w: resumption PSK with usage %d outside reinit or branch", ErrInvalidProposal, id.Usage)
	}
	return nil
}

// checkMembersSupport checks the extensions a GroupContextExtensions
// proposal sets against every member of t, the tree after the commit's
// adds and removes: each member must support every extension (§13.4) and
// the required capabilities (§12.1.7).
func checkMembersSupport(t *tree.Tree, exts []message.Extension) error {
	if err := checkGroupExtensions(exts); err != nil {
		return err
	}
	rc := requiredCapabilities(exts)
	var err error
	t.Members(func(l treemath.LeafIndex, leaf *message.LeafNode) bool {
		err = leafSupportsExtensions(leaf, exts)
		if err == nil && rc != nil {
			err = supportsRequired(leaf, rc)
		}
		if err != nil {
			err = fmt.Errorf("leaf %d: %w", l, err)
		}
		return err == nil
	})
	return err
}

func supportsRequired(leaf *message.LeafNode, rc *message.RequiredCapabilities) error {
	caps := &leaf.Capabilities
	for _, e := range rc.ExtensionTypes {
		if !defaultExtension(e) && !slices.Contains(caps.Extensions, e) {
			return fmt.Errorf("%w: required extension %d", ErrUnsupported, e)
		}
	}
	for _, pt := range rc.ProposalTypes {
		if (pt < message.ProposalAdd || pt > message.ProposalGroupContextExtensions) && !slices.Contains(caps.Proposals, pt) {
			return fmt.Errorf("%w: required proposal %d", ErrUnsupported, pt)
		}
	}
	for _, c := range rc.CredentialTypes {
		if !slices.Contains(caps.Credentials, c) {
			return fmt.Errorf("%w: required credential %d", ErrUnsupported, c)
		}
	}
	return nil
}

// excluded returns the leaves a commit's path must not encrypt to.
func (st *staged) excluded() []treemath.LeafIndex {
	out := make([]treemath.LeafIndex, len(st.adds))
	for i, a := range st.adds {
		out[i] = a.leaf
	}
	return out
}

// provisionalContext is the GroupContext a path is encrypted under
// (§12.4.2): the new epoch and extensions with the old transcript hash.
// The tree hash is filled in by treekem.
func (p *Public) provisionalContext(st *staged) message.GroupContext {
	ctx := p.ctx
	ctx.Epoch++
	ctx.Extensions = st.extensions
	return ctx
}

// checkPathKeys checks that no key of path appears in t (§12.4.2).
func checkPathKeys(t *tree.Tree, path *message.UpdatePath) error {
	for i, n := range path.Nodes {
		for _, m := range path.Nodes[:i] {
			if bytes.Equal(m.EncryptionKey, n.EncryptionKey) {
				return fmt.Errorf("%w: %w: key repeated in path", ErrInvalidPath, tree.ErrDuplicateKey)
			}
		}
		if x, ok := t.NodeWithEncryptionKey(n.EncryptionKey); ok {
			return fmt.Errorf("%w: %w: path key already at node %d", ErrInvalidPath, tree.ErrDuplicateKey, x)
		}
	}
	return nil
}
