package tree

import (
	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// RootHash returns the tree hash of the root (§7.8), the value the group
// context's tree_hash carries. It computes and caches every missing hash.
func (t *Tree) RootHash() []byte {
	return t.TreeHash(t.leaves.Root())
}

// TreeHash returns the tree hash of node x, or nil if x is outside the
// tree. The result is shared with the cache and must not be modified.
func (t *Tree) TreeHash(x treemath.NodeIndex) []byte {
	if !t.leaves.Contains(x) {
		return nil
	}
	return t.hash(x)
}

func (t *Tree) hash(x treemath.NodeIndex) []byte {
	if h := t.store.hash(x); h != nil {
		return h
	}
	var h []byte
	if leaf, ok := x.Leaf(); ok {
		var l *message.LeafNode
		if n := t.store.node(x); n != nil {
			l = n.Leaf
		}
		h = t.leafHash(leaf, l)
	} else {
		left, _ := treemath.Left(x)
		right, _ := treemath.Right(x)
		var p *message.ParentNode
		if n := t.store.node(x); n != nil {
			p = n.Parent
		}
		h = t.parentHash(p, t.hash(left), t.hash(right))
	}
	t.store.setHash(x, h)
	return h
}

// leafHash hashes a LeafNodeHashInput; l is nil for a blank leaf.
func (t *Tree) leafHash(leaf treemath.LeafIndex, l *message.LeafNode) []byte {
	w := codec.NewWriter(320)
	w.Uint8(uint8(message.NodeTypeLeaf))
	w.Uint32(uint32(leaf))
	w.Optional(l != nil)
	if l != nil {
		l.MarshalMLS(w)
	}
	return t.suite.Hash(w.Bytes())
}

// parentHash hashes a ParentNodeHashInput; p is nil for a blank parent.
func (t *Tree) parentHash(p *message.ParentNode, left, right []byte) []byte {
	w := codec.NewWriter(192)
	w.Uint8(uint8(message.NodeTypeParent))
	w.Optional(p != nil)
	if p != nil {
		p.MarshalMLS(w)
	}
	w.Opaque(left)
	w.Opaque(right)
	return t.suite.Hash(w.Bytes())
}

// hashWithout returns the tree hash of x in the tree where the leaves in
// removed are blanked and dropped from every unmerged_leaves list: the
// "original sibling tree hash" of §7.9. Only the nodes above removed
// leaves are rehashed; the rest come from the cache.
func (t *Tree) hashWithout(x treemath.NodeIndex, removed []uint32) []byte {
	if !anyLeafUnder(removed, x) {
		return t.hash(x)
	}
	if leaf, ok := x.Leaf(); ok {
		return t.leafHash(leaf, nil)
	}
	left, _ := treemath.Left(x)
	right, _ := treemath.Right(x)
	var p *message.ParentNode
	if n := t.store.node(x); n != nil {
		p = n.Parent
		if len(p.UnmergedLeaves) > 0 {
			kept := make([]uint32, 0, len(p.UnmergedLeaves))
			for _, u := range p.UnmergedLeaves {
				if !containsUint32(removed, u) {
					kept = append(kept, u)
				}
			}
			p = &message.ParentNode{EncryptionKey: p.EncryptionKey, ParentHash: p.ParentHash, UnmergedLeaves: kept}
		}
	}
	return t.parentHash(p, t.hashWithout(left, removed), t.hashWithout(right, removed))
}

func anyLeafUnder(leaves []uint32, x treemath.NodeIndex) bool {
	for _, l := range leaves {
		if treemath.InSubtree(treemath.LeafIndex(l).Node(), x) {
			return true
		}
	}
	return false
}

func containsUint32(vs []uint32, v uint32) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// ParentHash computes the parent hash of a node with the given encryption
// key and parent_hash field whose copath child has the given (original)
// tree hash (§7.9): Hash(ParentHashInput).
func (t *Tree) ParentHash(encryptionKey, parentHash, originalSiblingTreeHash []byte) []byte {
	w := codec.NewWriter(len(encryptionKey) + len(parentHash) + len(originalSiblingTreeHash) + 12)
	w.Opaque(encryptionKey)
	w.Opaque(parentHash)
	w.Opaque(originalSiblingTreeHash)
	return t.suite.Hash(w.Bytes())
}

// parentHashOf returns the parent hash of the parent node at p with copath
// child s, as its descendant on the other side must carry it.
func (t *Tree) parentHashOf(p, s treemath.NodeIndex) []byte {
	pn := t.store.node(p).Parent
	return t.ParentHash(pn.EncryptionKey, pn.ParentHash, t.hashWithout(s, pn.UnmergedLeaves))
}
