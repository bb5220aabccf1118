package tree

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// Tree is the public ratchet tree of one epoch. The zero value is not
// usable; build one with New or FromRatchetTree.
type Tree struct {
	suite  *suite.Suite
	leaves treemath.LeafCount
	// store holds leaves.Width() nodes, nil for a blank node, and caches
	// their tree hashes, nil meaning not computed. The pointed-to nodes are
	// never modified, only replaced. A cached hash implies that every
	// descendant's hash is cached too, which lets invalidation stop at the
	// first ancestor already cleared.
	store nodeStore
	// enc indexes the encryption keys of all nodes and sig the signature
	// keys of the leaves; stats summarises the members' credentials. All
	// three are persistent values shared with clones and kept up to date
	// by set.
	enc, sig keyIndex
	stats    memberStats
	// used is one more than the index of the rightmost non-blank leaf.
	// The leaves from it on are blank, and so is every subtree that lies
	// among them: resolutions skip such subtrees without walking them,
	// which matters because a tree of n members has up to n-1 blank
	// leaves on its right.
	used uint32
}

// New returns a one-leaf tree holding the creator's leaf, as a group starts
// (§11).
func New(s *suite.Suite, creator *message.LeafNode) *Tree {
	t := &Tree{suite: s, leaves: 1}
	t.store.init(1)
	t.store.setNode(0, leafNode(creator))
	t.buildIndex()
	return t
}

// FromRatchetTree builds a tree from its wire form (the ratchet_tree
// extension, §12.4.3.3). It checks the structure only: node types at their
// positions, a non-blank last node, and a size that fits. The contents are
// checked by Validate. The tree keeps rt's nodes, which must not be
// modified afterwards.
func FromRatchetTree(s *suite.Suite, rt message.RatchetTree) (*Tree, error) {
	n := len(rt)
	if n == 0 {
		return nil, fmt.Errorf("%w: empty", ErrMalformedTree)
	}
	if rt[n-1] == nil {
		return nil, fmt.Errorf("%w: trailing blank node", ErrMalformedTree)
	}
	if uint64(n) > uint64(treemath.MaxLeaves.Width()) {
		return nil, fmt.Errorf("%w: %d nodes", ErrMalformedTree, n)
	}
	// The smallest full tree that has a node at index n-1.
	leaves := treemath.LeafCountFor(uint32((uint64(n) + 2) / 2))
	t := &Tree{suite: s, leaves: leaves}
	t.store.init(int(leaves.Width()))
	for i, node := range rt {
		if node == nil {
			continue
		}
		isLeaf := treemath.NodeIndex(i).IsLeaf()
		switch {
		case isLeaf && (node.Type != message.NodeTypeLeaf || node.Leaf == nil):
			return nil, fmt.Errorf("%w: node %d is not a leaf", ErrMalformedTree, i)
		case !isLeaf && (node.Type != message.NodeTypeParent || node.Parent == nil):
			return nil, fmt.Errorf("%w: node %d is not a parent", ErrMalformedTree, i)
		}
		t.store.setNode(treemath.NodeIndex(i), node)
	}
	t.buildIndex()
	return t, nil
}

// RatchetTree returns the wire form of the tree with trailing blank nodes
// omitted, as §12.4.3.3 requires. The nodes are shared with t and must not
// be modified.
func (t *Tree) RatchetTree() message.RatchetTree {
	end := t.store.width
	for end > 0 && t.store.node(treemath.NodeIndex(end-1)) == nil {
		end--
	}
	return t.store.appendNodes(make(message.RatchetTree, 0, end), end)
}

// Clone returns a tree that shares t's immutable nodes and hashes but
// evolves independently of it. It copies one pointer per chunk (about one
// per 64 nodes); each tree copies a shared chunk of nodes when it first
// changes it.
func (t *Tree) Clone() *Tree {
	c := &Tree{suite: t.suite, leaves: t.leaves, enc: t.enc, sig: t.sig, stats: t.stats, used: t.used}
	t.store.cloneInto(&c.store)
	return c
}

// Suite returns the cipher suite the tree hashes with.
func (t *Tree) Suite() *suite.Suite { return t.suite }

// LeafCount returns the number of leaves, blank ones included (a power of
// two).
func (t *Tree) LeafCount() treemath.LeafCount { return t.leaves }

// Width returns the number of nodes.
func (t *Tree) Width() uint32 { return uint32(t.store.width) }

// Node returns the node at x, or nil if it is blank or outside the tree.
func (t *Tree) Node(x treemath.NodeIndex) *message.Node {
	if uint64(x) >= uint64(t.store.width) {
		return nil
	}
	return t.store.node(x)
}

// Leaf returns the LeafNode at leaf l, or nil if it is blank or outside
// the tree.
func (t *Tree) Leaf(l treemath.LeafIndex) *message.LeafNode {
	if !t.leaves.ContainsLeaf(l) {
		return nil
	}
	if n := t.store.node(l.Node()); n != nil {
		return n.Leaf
	}
	return nil
}

// Parent returns the ParentNode at x, or nil if it is blank, a leaf or
// outside the tree.
func (t *Tree) Parent(x treemath.NodeIndex) *message.ParentNode {
	if n := t.Node(x); n != nil {
		return n.Parent
	}
	return nil
}

// EncryptionKey returns the HPKE public key of the node at x, or nil if it
// is blank.
func (t *Tree) EncryptionKey(x treemath.NodeIndex) []byte {
	return nodeEncryptionKey(t.Node(x))
}

// NodeWithEncryptionKey returns a node whose encryption key is key, if
// there is one. It costs a lookup in an index, not a pass over the tree.
func (t *Tree) NodeWithEncryptionKey(key []byte) (treemath.NodeIndex, bool) {
	var found treemath.NodeIndex
	ok := false
	t.enc.find(key, func(x treemath.NodeIndex) bool {
		found, ok = x, true
		return false
	})
	return found, ok
}

// LeafWithSignatureKey returns a member whose signature key is key, if
// there is one.
func (t *Tree) LeafWithSignatureKey(key []byte) (treemath.LeafIndex, bool) {
	var found treemath.LeafIndex
	ok := false
	t.sig.find(key, func(x treemath.NodeIndex) bool {
		found, ok = treemath.LeafIndex(x/2), true
		return false
	})
	return found, ok
}

// IsBlank reports whether the node at x is blank (or outside the tree).
func (t *Tree) IsBlank(x treemath.NodeIndex) bool { return t.Node(x) == nil }

// Members calls fn for each non-blank leaf in index order, stopping early
// if fn returns false.
func (t *Tree) Members(fn func(treemath.LeafIndex, *message.LeafNode) bool) {
	for i := 0; i < t.store.width; i += 2 {
		if n := t.store.node(treemath.NodeIndex(i)); n != nil {
			if !fn(treemath.LeafIndex(i/2), n.Leaf) {
				return
			}
		}
	}
}

func leafNode(l *message.LeafNode) *message.Node {
	return &message.Node{Type: message.NodeTypeLeaf, Leaf: l}
}

func parentNode(p *message.ParentNode) *message.Node {
	return &message.Node{Type: message.NodeTypeParent, Parent: p}
}

// set replaces the node at x, forgets the cached hashes that depended on
// it and updates the key index and member stats.
func (t *Tree) set(x treemath.NodeIndex, n *message.Node) {
	old := t.store.node(x)
	t.store.setNode(x, n)
	t.invalidate(x)
	oldEnc, newEnc := nodeEncryptionKey(old), nodeEncryptionKey(n)
	if old != nil && (n == nil || !bytes.Equal(oldEnc, newEnc)) {
		t.enc = t.enc.without(oldEnc, x, t.store.owner)
	}
	if n != nil && (old == nil || !bytes.Equal(oldEnc, newEnc)) {
		t.enc = t.enc.with(newEnc, x, t.store.owner)
	}
	if !x.IsLeaf() {
		return
	}
	t.noteLeaf(x, n != nil)
	if old != nil {
		t.sig = t.sig.without(old.Leaf.SignatureKey, x, t.store.owner)
		t.stats = t.stats.with(old.Leaf, -1)
	}
	if n != nil {
		t.sig = t.sig.with(n.Leaf.SignatureKey, x, t.store.owner)
		t.stats = t.stats.with(n.Leaf, 1)
	}
}

// buildIndex builds the key index and member stats of a new tree. For a
// large tree (a joiner's) the encryption-key index, which covers twice as
// many nodes, is built on a second goroutine.
func (t *Tree) buildIndex() {
	t.enc, t.sig, t.stats = newKeyIndex(), newKeyIndex(), memberStats{}
	// The tries are built in place by owners of their own; the tree's
	// later edits copy what they change, once.
	buildEnc := func() {
		owner := new(storeOwner)
		for i := range t.store.width {
			x := treemath.NodeIndex(i)
			if n := t.store.node(x); n != nil {
				t.enc = t.enc.with(nodeEncryptionKey(n), x, owner)
			}
		}
	}
	var wg sync.WaitGroup
	if t.store.width >= 4096 {
		wg.Go(buildEnc)
	} else {
		buildEnc()
	}
	t.used = 0
	sigOwner := new(storeOwner)
	for i := 0; i < t.store.width; i += 2 {
		x := treemath.NodeIndex(i)
		if n := t.store.node(x); n != nil {
			t.sig = t.sig.with(n.Leaf.SignatureKey, x, sigOwner)
			t.stats.add(n.Leaf)
			t.used = uint32(i)/2 + 1
		}
	}
	wg.Wait()
}

// noteLeaf keeps used up to date when leaf node x becomes blank or not.
func (t *Tree) noteLeaf(x treemath.NodeIndex, present bool) {
	l := uint32(x) / 2
	switch {
	case present && l >= t.used:
		t.used = l + 1
	case !present && l+1 == t.used:
		for t.used > 0 && t.store.node(treemath.NodeIndex(2*(t.used-1))) == nil {
			t.used--
		}
	}
}

// blankSubtree reports whether the subtree of x lies among the blank
// leaves on the right of the tree.
func (t *Tree) blankSubtree(x treemath.NodeIndex) bool {
	first := (uint64(x) + 1 - uint64(1)<<x.Level()) / 2 // leftmost leaf below x
	return first >= uint64(t.used)
}

func nodeEncryptionKey(n *message.Node) []byte {
	switch {
	case n == nil:
		return nil
	case n.Leaf != nil:
		return n.Leaf.EncryptionKey
	default:
		return n.Parent.EncryptionKey
	}
}

func (t *Tree) invalidate(x treemath.NodeIndex) {
	t.store.setHash(x, nil)
	for {
		p, ok := t.leaves.Parent(x)
		if !ok || t.store.hash(p) == nil {
			return
		}
		t.store.setHash(p, nil)
		x = p
	}
}
