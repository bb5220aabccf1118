package treekem

import (
	"crypto/subtle"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// PathKeys are the keys of one commit's filtered direct path, derived from
// its path secrets once for all the members of one service that learn
// them. A member learns the secret of its lowest common ancestor with the
// committer and derives every node above from it (WithJoinerPathSecret);
// when a service holds thousands of a group's members, they share a
// handful of ancestors, and deriving each node's key once per member was
// most of a commit's cost (two X25519 base multiplications per member on
// average, one per node of the chain).
//
// A member's path secret is compared, in constant time, with the one
// already derived at its ancestor; only a secret not seen there is
// derived and its keys checked against the tree. Each member still opens
// its own ciphertext, so a commit that sealed a wrong secret to any of our
// members is refused as before: a different secret fails the check of
// the node's public key.
//
// PathKeys holds path secrets until Zero. It is not safe for concurrent
// use.
type PathKeys struct {
	suite     *suite.Suite
	t         *tree.Tree
	committer treemath.LeafIndex
	fdp       []treemath.NodeIndex
	// secrets[i] and keys[i] are those of fdp[i], nil until derived.
	secrets [][]byte
	keys    []*suite.HPKEPrivateKey
}

// NewPathKeys returns the path keys of committer's path in t, the tree
// with the path merged, whose filtered direct path (before the merge; the
// merge does not change it) is fdp.
func NewPathKeys(s *suite.Suite, t *tree.Tree, committer treemath.LeafIndex, fdp []treemath.NodeIndex) *PathKeys {
	return &PathKeys{
		suite: s, t: t, committer: committer, fdp: fdp,
		secrets: make([][]byte, len(fdp)), keys: make([]*suite.HPKEPrivateKey, len(fdp)),
	}
}

// PathKeys returns the keys of g's path, all known: for the committer's
// other members, whose secrets are g's own. t is the tree Generate merged
// the path into.
func (g *Generated) PathKeys(t *tree.Tree) *PathKeys {
	pk := NewPathKeys(g.Private.suite, t, g.sender, g.fdp)
	for i, x := range g.fdp {
		pk.secrets[i] = slices.Clone(g.pathSecrets[i])
		pk.keys[i] = g.Private.PrivateKey(x)
	}
	return pk
}

// Join returns p after the commit, given the path secret of p's lowest
// common ancestor with the committer: p with the keys of that ancestor
// and of every node above it on the committer's filtered direct path, as
// WithJoinerPathSecret returns it. Keys of p's other nodes are kept; the
// caller prunes those the commit blanked.
func (pk *PathKeys) Join(p *PrivateState, pathSecret []byte) (*PrivateState, error) {
	ca := treemath.CommonAncestor(p.leaf.Node(), pk.committer.Node())
	k := slices.Index(pk.fdp, ca)
	if k < 0 {
		return nil, fmt.Errorf("%w: common ancestor %d of leaves %d and %d is not on the committer's filtered direct path", ErrNoDecryptionKey, ca, p.leaf, pk.committer)
	}
	if err := pk.derive(k, pathSecret); err != nil {
		return nil, err
	}
	add := make([]nodeKey, 0, len(pk.fdp)-k)
	for i := k; i < len(pk.fdp); i++ {
		add = append(add, nodeKey{pk.fdp[i], pk.keys[i]})
	}
	return p.with(nil, add), nil
}

// derive makes sure that the keys of fdp[k] and above are known and that
// secret is fdp[k]'s path secret. It derives down the chain only until it
// meets a secret already known, which it compares.
func (pk *PathKeys) derive(k int, secret []byte) error {
	secret = slices.Clone(secret)
	defer func() { clear(secret) }()
	for i := k; i < len(pk.fdp); i++ {
		if known := pk.secrets[i]; known != nil {
			if subtle.ConstantTimeCompare(known, secret) == 1 {
				return nil
			}
			// Only one secret derives the key the tree holds, and the
			// known one did.
			return fmt.Errorf("%w: node %d: another path secret than the one it was derived from", ErrPublicKeyMismatch, pk.fdp[i])
		}
		x := pk.fdp[i]
		priv, err := derivePathKey(pk.suite, secret)
		if err != nil {
			return err
		}
		if want := pk.t.EncryptionKey(x); want == nil || !priv.HasPublic(want) {
			return fmt.Errorf("%w: node %d", ErrPublicKeyMismatch, x)
		}
		pk.secrets[i], pk.keys[i] = slices.Clone(secret), priv
		next := pk.suite.DeriveSecret(secret, "path")
		clear(secret)
		secret = next
	}
	return nil
}

// Top returns a copy of the path secret of the last node of the
// committer's filtered direct path, from which the commit secret follows
// (§7.4); nil until a Join has derived or met it.
func (pk *PathKeys) Top() []byte {
	if len(pk.secrets) == 0 {
		return nil
	}
	return slices.Clone(pk.secrets[len(pk.secrets)-1])
}

// Zero erases the path secrets PathKeys holds.
func (pk *PathKeys) Zero() {
	for _, s := range pk.secrets {
		clear(s)
	}
}

// KeyCheck checks the private states of many members of one group against
// its tree (PrivateState.Check), each node's key once: members hold the
// same key for the nodes they share, so a service holding thousands of a
// group's members checked the root's key thousands of times, one X25519
// base multiplication each. A key equal (in constant time) to one already
// found to match its node is not derived again.
//
// KeyCheck is not safe for concurrent use.
type KeyCheck struct {
	t       *tree.Tree
	matched map[treemath.NodeIndex]*suite.HPKEPrivateKey
}

// NewKeyCheck returns a KeyCheck against t.
func NewKeyCheck(t *tree.Tree) *KeyCheck {
	return &KeyCheck{t: t, matched: make(map[treemath.NodeIndex]*suite.HPKEPrivateKey)}
}

// Check is p.Check(t) for KeyCheck's tree t.
func (c *KeyCheck) Check(p *PrivateState) error {
	if c.t.Leaf(p.leaf) == nil {
		return fmt.Errorf("%w: leaf %d", ErrNotInTree, p.leaf)
	}
	for _, k := range p.keys {
		if m := c.matched[k.node]; m != nil && (m == k.priv || m.Equal(k.priv)) {
			continue
		}
		if want := c.t.EncryptionKey(k.node); want == nil || !k.priv.HasPublic(want) {
			return fmt.Errorf("%w: node %d", ErrPublicKeyMismatch, k.node)
		}
		c.matched[k.node] = k.priv
	}
	return nil
}
