package treemath

import "math/bits"

// NodeIndex is the position of a node in the flat array of a ratchet tree.
type NodeIndex uint32

// LeafIndex is the position of a leaf among the leaves, counting from 0.
type LeafIndex uint32

// LeafCount is the number of leaves of a tree: a power of two in RFC 9420.
type LeafCount uint32

// MaxLeaves is the largest leaf count whose node indices fit a uint32.
const MaxLeaves LeafCount = 1 << 31

// Log2 returns the exponent of the largest power of two not above x, and 0
// for x = 0, as the RFC's log2 does.
func Log2(x uint32) uint32 {
	if x == 0 {
		return 0
	}
	return uint32(bits.Len32(x)) - 1
}

// LeafCountFor returns the leaf count of the smallest full tree that holds
// members leaves: the next power of two, at least 1.
func LeafCountFor(members uint32) LeafCount {
	if members <= 1 {
		return 1
	}
	return LeafCount(1) << bits.Len32(members-1)
}

// Node returns the node index of leaf l.
func (l LeafIndex) Node() NodeIndex { return NodeIndex(l) << 1 }

// IsLeaf reports whether x is a leaf node (an even index).
func (x NodeIndex) IsLeaf() bool { return x&1 == 0 }

// Leaf returns the leaf index of x, or false if x is a parent node.
func (x NodeIndex) Leaf() (LeafIndex, bool) {
	if !x.IsLeaf() {
		return 0, false
	}
	return LeafIndex(x >> 1), true
}

// Level returns the height of x above the leaves: 0 for a leaf, and the
// number of trailing one bits for a parent node.
func (x NodeIndex) Level() uint32 {
	return uint32(bits.TrailingZeros32(^uint32(x)))
}

// Width returns the number of nodes of a tree with n leaves.
func (n LeafCount) Width() uint32 {
	if n == 0 {
		return 0
	}
	return 2*(uint32(n)-1) + 1
}

// Contains reports whether x is a node of a tree with n leaves.
func (n LeafCount) Contains(x NodeIndex) bool { return uint32(x) < n.Width() }

// ContainsLeaf reports whether l is a leaf of a tree with n leaves.
func (n LeafCount) ContainsLeaf(l LeafIndex) bool { return uint32(l) < uint32(n) }

// Root returns the root of a tree with n leaves (0 for an empty tree).
func (n LeafCount) Root() NodeIndex {
	return NodeIndex(uint32(1)<<Log2(n.Width()) - 1)
}

// Left returns the left child of x, or false if x is a leaf.
func Left(x NodeIndex) (NodeIndex, bool) {
	k := x.Level()
	if k == 0 {
		return 0, false
	}
	return x ^ NodeIndex(1)<<(k-1), true
}

// Right returns the right child of x, or false if x is a leaf. In a full
// tree the right child of a node in the tree is in the tree too.
func Right(x NodeIndex) (NodeIndex, bool) {
	k := x.Level()
	if k == 0 {
		return 0, false
	}
	return x ^ NodeIndex(3)<<(k-1), true
}

// Parent returns the parent of x in a tree with n leaves, or false if x is
// the root or not in the tree.
func (n LeafCount) Parent(x NodeIndex) (NodeIndex, bool) {
	if !n.Contains(x) || x == n.Root() {
		return 0, false
	}
	return parent(x), true
}

// parent is the RFC's parent step; x must not be the root of a full tree.
func parent(x NodeIndex) NodeIndex {
	k := x.Level()
	b := (x >> (k + 1)) & 1
	return (x | NodeIndex(1)<<k) ^ (b << (k + 1))
}

// Sibling returns the other child of x's parent in a tree with n leaves, or
// false if x is the root or not in the tree.
func (n LeafCount) Sibling(x NodeIndex) (NodeIndex, bool) {
	if !n.Contains(x) || x == n.Root() {
		return 0, false
	}
	return sibling(x), true
}

func sibling(x NodeIndex) NodeIndex {
	// The sibling differs from x only in the bit just above x's level.
	return x ^ NodeIndex(2)<<x.Level()
}

// PathLen returns the length of the direct path (and of the copath) of x in
// a tree with n leaves: the number of levels between x and the root.
func (n LeafCount) PathLen(x NodeIndex) int {
	if !n.Contains(x) {
		return 0
	}
	rl, xl := n.Root().Level(), x.Level()
	if xl >= rl {
		return 0 // x is the root (or n is not a valid leaf count)
	}
	return int(rl - xl)
}

// DirectPath returns the ancestors of x, from its parent up to the root, in a
// tree with n leaves; nil for the root or a node outside the tree.
func (n LeafCount) DirectPath(x NodeIndex) []NodeIndex {
	if l := n.PathLen(x); l > 0 {
		return n.AppendDirectPath(make([]NodeIndex, 0, l), x)
	}
	return nil
}

// AppendDirectPath appends the direct path of x to dst and returns it.
func (n LeafCount) AppendDirectPath(dst []NodeIndex, x NodeIndex) []NodeIndex {
	// Counting steps, rather than walking until the root is met, bounds
	// the loop even for leaf counts that are not powers of two.
	for i := n.PathLen(x); i > 0; i-- {
		x = parent(x)
		dst = append(dst, x)
	}
	return dst
}

// Copath returns the siblings of x and of each of its ancestors below the
// root, from the bottom up, in a tree with n leaves; nil for the root or a
// node outside the tree.
func (n LeafCount) Copath(x NodeIndex) []NodeIndex {
	if l := n.PathLen(x); l > 0 {
		return n.AppendCopath(make([]NodeIndex, 0, l), x)
	}
	return nil
}

// AppendCopath appends the copath of x to dst and returns it.
func (n LeafCount) AppendCopath(dst []NodeIndex, x NodeIndex) []NodeIndex {
	for i := n.PathLen(x); i > 0; i-- {
		dst = append(dst, sibling(x))
		x = parent(x)
	}
	return dst
}

// CommonAncestor returns the lowest node whose subtree holds both x and y
// (x itself when y is below x, and the other way round). In a full tree the
// result lies in the tree whenever x and y do.
func CommonAncestor(x, y NodeIndex) NodeIndex {
	// Nodes of level k cover the index ranges that agree above bit k; so the
	// ancestor is found by dropping low bits until the two prefixes agree.
	lx, ly := x.Level()+1, y.Level()+1
	if lx <= ly && uint64(x)>>ly == uint64(y)>>ly {
		return y
	}
	if ly <= lx && uint64(x)>>lx == uint64(y)>>lx {
		return x
	}
	k := uint32(bits.Len32(uint32(x ^ y)))
	prefix := uint32(x) >> k
	return NodeIndex(prefix<<k | (uint32(1)<<(k-1) - 1))
}

// InSubtree reports whether x lies in the subtree rooted at a (a itself
// included).
func InSubtree(x, a NodeIndex) bool {
	// The aligned block of 2^(k+1) indices around a holds a's subtree plus
	// one node above it, which the level test excludes.
	k := a.Level()
	return x.Level() <= k && uint64(x)>>(k+1) == uint64(a)>>(k+1)
}
