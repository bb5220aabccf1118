package tree

import (
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// AppendResolution appends the resolution of x (§4.1.1) to dst and returns
// it: the nearest non-blank nodes below x, each followed by its unmerged
// leaves, depth-first and left-first. Reusing dst lets loops over a large
// tree run without allocating per node.
func (t *Tree) AppendResolution(dst []treemath.NodeIndex, x treemath.NodeIndex) []treemath.NodeIndex {
	if uint64(x) >= uint64(t.store.width) || t.blankSubtree(x) {
		return dst
	}
	if n := t.store.node(x); n != nil {
		dst = append(dst, x)
		if n.Parent != nil {
			for _, l := range n.Parent.UnmergedLeaves {
				dst = append(dst, treemath.LeafIndex(l).Node())
			}
		}
		return dst
	}
	if x.IsLeaf() {
		return dst
	}
	l, _ := treemath.Left(x)
	r, _ := treemath.Right(x)
	dst = t.AppendResolution(dst, l)
	return t.AppendResolution(dst, r)
}

// Resolution returns the resolution of x.
func (t *Tree) Resolution(x treemath.NodeIndex) []treemath.NodeIndex {
	return t.AppendResolution(nil, x)
}

// resolutionEmpty reports whether the resolution of x is empty, that is,
// whether its whole subtree is blank. It stops at the first non-blank node.
func (t *Tree) resolutionEmpty(x treemath.NodeIndex) bool {
	if t.blankSubtree(x) {
		return true
	}
	if t.store.node(x) != nil {
		return false
	}
	if x.IsLeaf() {
		return true
	}
	l, _ := treemath.Left(x)
	r, _ := treemath.Right(x)
	return t.resolutionEmpty(l) && t.resolutionEmpty(r)
}

// FilteredDirectPath returns the filtered direct path of leaf l (§4.1.2):
// its ancestors, bottom up, without those whose child on l's copath has an
// empty resolution.
func (t *Tree) FilteredDirectPath(l treemath.LeafIndex) []treemath.NodeIndex {
	if !t.leaves.ContainsLeaf(l) {
		return nil
	}
	x := l.Node()
	path := make([]treemath.NodeIndex, 0, t.leaves.PathLen(x))
	for {
		p, ok := t.leaves.Parent(x)
		if !ok {
			return path
		}
		sib, _ := t.leaves.Sibling(x)
		if !t.resolutionEmpty(sib) {
			path = append(path, p)
		}
		x = p
	}
}

// CopathChild returns the child of p that is not an ancestor of (or equal
// to) node x, which must lie below p.
func CopathChild(p, x treemath.NodeIndex) treemath.NodeIndex {
	l, _ := treemath.Left(p)
	r, _ := treemath.Right(p)
	if treemath.InSubtree(x, l) {
		return r
	}
	return l
}

// AppendCopathResolution appends the resolution of the child of p on the
// copath of leaf l, leaving out the leaves in exclude (the members a commit
// adds, §7.6), and returns it.
func (t *Tree) AppendCopathResolution(dst []treemath.NodeIndex, p treemath.NodeIndex, l treemath.LeafIndex, exclude []treemath.LeafIndex) []treemath.NodeIndex {
	start := len(dst)
	dst = t.AppendResolution(dst, CopathChild(p, l.Node()))
	if len(exclude) == 0 {
		return dst
	}
	kept := dst[:start]
	for _, x := range dst[start:] {
		if leaf, ok := x.Leaf(); ok && slices.Contains(exclude, leaf) {
			continue
		}
		kept = append(kept, x)
	}
	return kept
}
