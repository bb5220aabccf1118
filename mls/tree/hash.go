package tree

import (
	"hash"

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
	return t.computeHash(t.newHasher(), x)
}

// computeHash returns the tree hash of x, computing and caching it and
// any missing descendant's with hs.
func (t *Tree) computeHash(hs *hasher, x treemath.NodeIndex) []byte {
	if h := t.store.hash(x); h != nil {
		return h
	}
	var h []byte
	if leaf, ok := x.Leaf(); ok {
		var l *message.LeafNode
		if n := t.store.node(x); n != nil {
			l = n.Leaf
		}
		h = hs.leafHash(leaf, l)
	} else {
		left, _ := treemath.Left(x)
		right, _ := treemath.Right(x)
		var p *message.ParentNode
		if n := t.store.node(x); n != nil {
			p = n.Parent
		}
		h = hs.parentHash(p, t.computeHash(hs, left), t.computeHash(hs, right))
	}
	t.store.setHash(x, h)
	return h
}

// hasher hashes many nodes' inputs with one hash state and one encoding
// buffer and, past the first slabAfter results, carves the results out of
// shared slabs, so that hashing a joined tree does not allocate three
// times per node. A slab stays alive while any hash in it is cached, so
// the few hashes a commit computes are allocated singly: a long-lived tree
// then pins at most the slabs of the one computation that hashed (most
// of) the whole tree.
//
// Each input is encoded and hashed before the next one starts (a parent's
// children are hashed before its own input is encoded), so every input
// reuses the buffer from its beginning.
type hasher struct {
	h     hash.Hash
	w     codec.Writer
	slab  []byte
	count int
}

const slabAfter = 64

// encodingRoom is the buffer a hasher starts with: room for a parent's
// input and most leaves'. A larger leaf grows it once.
const encodingRoom = 512

func (t *Tree) newHasher() *hasher {
	return &hasher{h: t.suite.NewHash(), w: *codec.NewWriter(encodingRoom)}
}

// start empties the buffer for the next input.
func (hs *hasher) start() *codec.Writer {
	hs.w.Reset()
	return &hs.w
}

// sum hashes the input written since start. The result is never appended
// to (its capacity is its length), so it may share a slab with others.
func (hs *hasher) sum() []byte {
	hs.h.Reset()
	hs.h.Write(hs.w.Bytes())
	if hs.count++; hs.count <= slabAfter {
		return hs.h.Sum(nil)
	}
	size := hs.h.Size()
	if len(hs.slab) < size {
		hs.slab = make([]byte, 64*size)
	}
	out := hs.h.Sum(hs.slab[:0:size])
	hs.slab = hs.slab[size:]
	return out
}

// leafHash hashes a LeafNodeHashInput; l is nil for a blank leaf.
func (hs *hasher) leafHash(leaf treemath.LeafIndex, l *message.LeafNode) []byte {
	w := hs.start()
	w.Uint8(uint8(message.NodeTypeLeaf))
	w.Uint32(uint32(leaf))
	w.Optional(l != nil)
	if l != nil {
		l.MarshalMLS(w)
	}
	return hs.sum()
}

// parentHash hashes a ParentNodeHashInput; p is nil for a blank parent.
func (hs *hasher) parentHash(p *message.ParentNode, left, right []byte) []byte {
	w := hs.start()
	w.Uint8(uint8(message.NodeTypeParent))
	w.Optional(p != nil)
	if p != nil {
		p.MarshalMLS(w)
	}
	w.Opaque(left)
	w.Opaque(right)
	return hs.sum()
}

// parentHashInput hashes a ParentHashInput (§7.9).
func (hs *hasher) parentHashInput(encryptionKey, parentHash, originalSiblingTreeHash []byte) []byte {
	w := hs.start()
	w.Opaque(encryptionKey)
	w.Opaque(parentHash)
	w.Opaque(originalSiblingTreeHash)
	return hs.sum()
}

// hashWithout returns the tree hash of x in the tree where the leaves in
// removed are blanked and dropped from every unmerged_leaves list: the
// "original sibling tree hash" of §7.9. Only the nodes above removed
// leaves are rehashed; the rest come from the cache.
func (t *Tree) hashWithout(hs *hasher, x treemath.NodeIndex, removed []uint32) []byte {
	if !anyLeafUnder(removed, x) {
		return t.computeHash(hs, x)
	}
	if leaf, ok := x.Leaf(); ok {
		return hs.leafHash(leaf, nil)
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
	return hs.parentHash(p, t.hashWithout(hs, left, removed), t.hashWithout(hs, right, removed))
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
	return t.newHasher().parentHashInput(encryptionKey, parentHash, originalSiblingTreeHash)
}

// parentHashOf returns the parent hash of the parent node at p with copath
// child s, as its descendant on the other side must carry it.
func (t *Tree) parentHashOf(hs *hasher, p, s treemath.NodeIndex) []byte {
	pn := t.store.node(p).Parent
	return hs.parentHashInput(pn.EncryptionKey, pn.ParentHash, t.hashWithout(hs, s, pn.UnmergedLeaves))
}
