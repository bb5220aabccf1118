package treekem

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// nodeKey is the private key of one node the member knows.
type nodeKey struct {
	node treemath.NodeIndex
	priv *suite.HPKEPrivateKey
}

// PrivateState holds one member's private tree keys: its leaf's HPKE
// private key and those of the nodes above it that it knows. It is never
// modified after construction; operations return new states that share
// the (immutable) keys they keep with the old one.
type PrivateState struct {
	suite *suite.Suite
	leaf  treemath.LeafIndex
	// keys is sorted by node index; every node is the leaf or one of its
	// ancestors. A path has at most 32 nodes, so a slice beats a map.
	keys []nodeKey
}

// NewPrivateState returns the state of a member at leaf that knows only its
// leaf's private key (as a joiner does before any path secret).
func NewPrivateState(leaf treemath.LeafIndex, leafKey *suite.HPKEPrivateKey) *PrivateState {
	return &PrivateState{suite: leafKey.Suite(), leaf: leaf, keys: []nodeKey{{leaf.Node(), leafKey}}}
}

// Leaf returns the member's leaf index.
func (p *PrivateState) Leaf() treemath.LeafIndex { return p.leaf }

// Suite returns the cipher suite of the keys.
func (p *PrivateState) Suite() *suite.Suite { return p.suite }

// PrivateKey returns the private key the member holds for node x, or nil.
func (p *PrivateState) PrivateKey(x treemath.NodeIndex) *suite.HPKEPrivateKey {
	i, ok := slices.BinarySearchFunc(p.keys, x, func(k nodeKey, x treemath.NodeIndex) int { return int(k.node) - int(x) })
	if !ok {
		return nil
	}
	return p.keys[i].priv
}

// with returns a copy of p whose keys for the nodes in drop are removed and
// with the given keys added (replacing any for the same node).
func (p *PrivateState) with(drop func(treemath.NodeIndex) bool, add []nodeKey) *PrivateState {
	keys := make([]nodeKey, 0, len(p.keys)+len(add))
	for _, k := range p.keys {
		if drop != nil && drop(k.node) {
			continue
		}
		if slices.ContainsFunc(add, func(a nodeKey) bool { return a.node == k.node }) {
			continue
		}
		keys = append(keys, k)
	}
	keys = append(keys, add...)
	slices.SortFunc(keys, func(a, b nodeKey) int { return int(a.node) - int(b.node) })
	return &PrivateState{suite: p.suite, leaf: p.leaf, keys: keys}
}

// derivePathKey turns a path secret into the key of its node (§7.4):
// node_secret = DeriveSecret(path_secret, "node"), then DeriveKeyPair.
func derivePathKey(s *suite.Suite, pathSecret []byte) (*suite.HPKEPrivateKey, error) {
	nodeSecret := s.DeriveSecret(pathSecret, "node")
	defer clear(nodeSecret)
	return s.DeriveHPKEKey(nodeSecret)
}

// WithNodeSecret returns p with the private key of node x derived from a
// path secret, checked against x's public key in t. It sets x alone; a
// joiner that must derive upwards uses WithJoinerPathSecret.
func (p *PrivateState) WithNodeSecret(t *tree.Tree, x treemath.NodeIndex, pathSecret []byte) (*PrivateState, error) {
	if !treemath.InSubtree(p.leaf.Node(), x) {
		return nil, fmt.Errorf("%w: node %d is not above leaf %d", ErrPublicKeyMismatch, x, p.leaf)
	}
	priv, err := derivePathKey(p.suite, pathSecret)
	if err != nil {
		return nil, err
	}
	if want := t.EncryptionKey(x); want == nil || !priv.HasPublic(want) {
		return nil, fmt.Errorf("%w: node %d", ErrPublicKeyMismatch, x)
	}
	return p.with(nil, []nodeKey{{x, priv}}), nil
}

// WithJoinerPathSecret returns the state of a new member after a Welcome
// that carried a path secret (§12.4.3.1): the secret belongs to the lowest
// common ancestor of the member's leaf and the committer's, and each
// further non-blank ancestor gets the next secret of the chain. Every
// derived key is checked against t.
func (p *PrivateState) WithJoinerPathSecret(t *tree.Tree, committer treemath.LeafIndex, pathSecret []byte) (*PrivateState, error) {
	x := treemath.CommonAncestor(p.leaf.Node(), committer.Node())
	if !t.LeafCount().Contains(x) || x.IsLeaf() {
		return nil, fmt.Errorf("%w: no common ancestor of leaves %d and %d", ErrNotInTree, p.leaf, committer)
	}
	var add []nodeKey
	secret := bytes.Clone(pathSecret)
	for ok := true; ok; x, ok = t.LeafCount().Parent(x) {
		want := t.EncryptionKey(x)
		if want == nil {
			continue
		}
		priv, err := derivePathKey(p.suite, secret)
		if err != nil {
			return nil, err
		}
		if !priv.HasPublic(want) {
			return nil, fmt.Errorf("%w: node %d", ErrPublicKeyMismatch, x)
		}
		add = append(add, nodeKey{x, priv})
		next := p.suite.DeriveSecret(secret, "path")
		clear(secret)
		secret = next
	}
	clear(secret)
	return p.with(nil, add), nil
}

// Prune returns p without the keys of nodes that are blank in t or outside
// it, for a member whose tree changed without an UpdatePath it applied:
// an Update or Remove blanks the nodes above the changed leaf, and a
// Remove may truncate the tree. Apply prunes by itself. It returns p if
// nothing is dropped.
func (p *PrivateState) Prune(t *tree.Tree) *PrivateState {
	stale := func(x treemath.NodeIndex) bool { return !x.IsLeaf() && t.IsBlank(x) }
	if !slices.ContainsFunc(p.keys, func(k nodeKey) bool { return stale(k.node) }) {
		return p
	}
	return p.with(stale, nil)
}

// CheckPlaced is Check for a state that was checked when it was made and
// kept since where nothing could alter it (sealed to its place): p's leaf
// must be a member of t, every key p holds must be at a non-blank node of
// t, and the leaf's key must match, but no public key is derived above the
// leaf. Each costs an X25519 base multiplication: for a service holding
// thousands of a group's members, loading them all checked (as committing
// does) spent most of its time there. A key above the leaf that does not
// match would fail the first path secret sealed to it.
func (p *PrivateState) CheckPlaced(t *tree.Tree) error {
	if t.Leaf(p.leaf) == nil {
		return fmt.Errorf("%w: leaf %d", ErrNotInTree, p.leaf)
	}
	for _, k := range p.keys {
		want := t.EncryptionKey(k.node)
		if want == nil || k.node == p.leaf.Node() && !k.priv.HasPublic(want) {
			return fmt.Errorf("%w: node %d", ErrPublicKeyMismatch, k.node)
		}
	}
	return nil
}

// Check verifies that every key p holds belongs to a non-blank node of t
// whose public key matches it, and that p's leaf is a member of t.
func (p *PrivateState) Check(t *tree.Tree) error {
	return NewKeyCheck(t).Check(p)
}
