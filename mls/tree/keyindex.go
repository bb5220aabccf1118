package tree

import (
	"bytes"
	"hash/maphash"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// keyIndex finds the nodes that hold a given key, so that the uniqueness
// rules of §7.3 and §12.4.2 cost one lookup per key instead of a pass over
// the tree on every commit.
//
// It is a persistent hash trie: with and without return a new index that
// shares everything but one root-to-bucket path with the old one. A clone
// of a tree therefore shares its origin's index at no cost, a path change
// copies O(log n) small trie nodes, and neither tree sees the other's
// changes.
//
// A trie node records the owner (a nodeStore's, see store.go) that made
// it, and an edit by the same owner changes it in place: a commit's many
// key changes copy each trie node they touch once, not once per key. The
// store's ownership rule makes this safe: a tree's owner changes before
// its first write after a Clone, so a node made before the Clone, which
// both trees may reach, is never written again.
//
// Entries are (key, node) pairs, so a key held by several nodes (possible
// in a received tree before Validate rejects it) is indexed correctly and
// removing one holder leaves the others.
type keyIndex struct {
	seed maphash.Seed
	root *trieNode
}

type keyEntry struct {
	hash uint64
	key  []byte // shared with the immutable node that holds it
	node treemath.NodeIndex
}

const (
	trieBits   = 5
	trieFanout = 1 << trieBits
	// trieMaxDepth is where the 64 hash bits run out; buckets at that
	// depth grow instead of splitting.
	trieMaxDepth = 64 / trieBits
	// bucketSize is the most entries a bucket above trieMaxDepth holds
	// before it splits.
	bucketSize = 8
)

// trieNode is either an interior node (children != nil) or a bucket of
// entries whose hashes agree on the bits consumed above it.
type trieNode struct {
	children *[trieFanout]*trieNode
	entries  []keyEntry
	owner    *storeOwner // may change this node in place; nil: nobody
}

func newKeyIndex() keyIndex { return keyIndex{seed: maphash.MakeSeed()} }

func (ix *keyIndex) hash(key []byte) uint64 { return maphash.Bytes(ix.seed, key) }

func trieSlot(hash uint64, depth int) int {
	return int(hash>>(depth*trieBits)) & (trieFanout - 1)
}

// with returns the index with (key, node) added, changing in place the
// trie nodes that owner made.
func (ix keyIndex) with(key []byte, node treemath.NodeIndex, owner *storeOwner) keyIndex {
	ix.root = ix.root.insert(keyEntry{ix.hash(key), key, node}, 0, owner)
	return ix
}

// without returns the index with the entry (key, node) removed, changing
// in place the trie nodes that owner made.
func (ix keyIndex) without(key []byte, node treemath.NodeIndex, owner *storeOwner) keyIndex {
	ix.root, _ = ix.root.remove(keyEntry{ix.hash(key), key, node}, 0, owner)
	return ix
}

// find calls fn for each node holding key until fn returns false.
func (ix *keyIndex) find(key []byte, fn func(treemath.NodeIndex) bool) {
	h := ix.hash(key)
	n := ix.root
	for depth := 0; n != nil && n.children != nil; depth++ {
		n = n.children[trieSlot(h, depth)]
	}
	if n == nil {
		return
	}
	for _, e := range n.entries {
		if e.hash == h && bytes.Equal(e.key, key) && !fn(e.node) {
			return
		}
	}
}

// writable returns n itself if owner may change it, else a copy that
// owner may. The copy shares n's children array and entries until they are
// written, which copies them too (see insert and remove).
func (n *trieNode) writable(owner *storeOwner) (w *trieNode, copied bool) {
	if n.owner == owner && owner != nil {
		return n, false
	}
	return &trieNode{children: n.children, entries: n.entries, owner: owner}, true
}

// insert returns n with e added.
func (n *trieNode) insert(e keyEntry, depth int, owner *storeOwner) *trieNode {
	if n == nil {
		return &trieNode{entries: []keyEntry{e}, owner: owner}
	}
	if n.children == nil && len(n.entries) >= bucketSize && depth < trieMaxDepth {
		// The new interior node is owner's, so it is filled in place.
		split := &trieNode{children: new([trieFanout]*trieNode), owner: owner}
		for _, old := range n.entries {
			split.insert(old, depth, owner)
		}
		return split.insert(e, depth, owner)
	}
	w, copied := n.writable(owner)
	if w.children == nil {
		if copied {
			entries := make([]keyEntry, len(n.entries), len(n.entries)+1)
			copy(entries, n.entries)
			w.entries = entries
		}
		w.entries = append(w.entries, e)
		return w
	}
	if copied {
		children := *n.children
		w.children = &children
	}
	i := trieSlot(e.hash, depth)
	w.children[i] = w.children[i].insert(e, depth+1, owner)
	return w
}

// remove returns n without the entry equal to e (same key and node) and
// whether there was one. Emptied nodes are dropped.
func (n *trieNode) remove(e keyEntry, depth int, owner *storeOwner) (*trieNode, bool) {
	if n == nil {
		return nil, false
	}
	if n.children == nil {
		for i, x := range n.entries {
			if x.hash != e.hash || x.node != e.node || !bytes.Equal(x.key, e.key) {
				continue
			}
			if len(n.entries) == 1 {
				return nil, true
			}
			w, copied := n.writable(owner)
			if copied {
				w.entries = make([]keyEntry, 0, len(n.entries)-1)
				w.entries = append(w.entries, n.entries[:i]...)
				w.entries = append(w.entries, n.entries[i+1:]...)
			} else {
				w.entries = slices.Delete(w.entries, i, i+1)
			}
			return w, true
		}
		return n, false
	}
	i := trieSlot(e.hash, depth)
	c, ok := n.children[i].remove(e, depth+1, owner)
	if !ok {
		return n, false
	}
	if c == nil {
		empty := true
		for j, x := range n.children {
			empty = empty && (x == nil || j == i)
		}
		if empty {
			return nil, true
		}
	}
	w, copied := n.writable(owner)
	if copied {
		children := *n.children
		w.children = &children
	}
	w.children[i] = c
	return w, true
}
