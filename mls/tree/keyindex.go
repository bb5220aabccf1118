package tree

import (
	"bytes"
	"hash/maphash"

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
// changes. A trie node is never modified once an index that another tree
// may hold points to it; only build, on a fresh trie, works in place.
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
}

func newKeyIndex() keyIndex { return keyIndex{seed: maphash.MakeSeed()} }

func (ix *keyIndex) hash(key []byte) uint64 { return maphash.Bytes(ix.seed, key) }

func trieSlot(hash uint64, depth int) int {
	return int(hash>>(depth*trieBits)) & (trieFanout - 1)
}

// add inserts (key, node) in place. It is only for building a fresh index
// that no tree shares yet.
func (ix *keyIndex) add(key []byte, node treemath.NodeIndex) {
	ix.root = ix.root.insert(keyEntry{ix.hash(key), key, node}, 0, true)
}

// with returns the index with (key, node) added.
func (ix keyIndex) with(key []byte, node treemath.NodeIndex) keyIndex {
	ix.root = ix.root.insert(keyEntry{ix.hash(key), key, node}, 0, false)
	return ix
}

// without returns the index with the entry (key, node) removed.
func (ix keyIndex) without(key []byte, node treemath.NodeIndex) keyIndex {
	ix.root, _ = ix.root.remove(keyEntry{ix.hash(key), key, node}, 0)
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

// insert returns n with e added. With inPlace it modifies n, which must
// then belong to a trie no index shares; otherwise it copies the path.
func (n *trieNode) insert(e keyEntry, depth int, inPlace bool) *trieNode {
	if n == nil {
		if inPlace {
			// A bucket being built will likely fill up.
			entries := make([]keyEntry, 1, bucketSize)
			entries[0] = e
			return &trieNode{entries: entries}
		}
		return &trieNode{entries: []keyEntry{e}}
	}
	if n.children == nil {
		if len(n.entries) < bucketSize || depth >= trieMaxDepth {
			if inPlace {
				n.entries = append(n.entries, e)
				return n
			}
			entries := make([]keyEntry, len(n.entries), len(n.entries)+1)
			copy(entries, n.entries)
			return &trieNode{entries: append(entries, e)}
		}
		// The new interior node is fresh, so it is filled in place.
		split := &trieNode{children: new([trieFanout]*trieNode)}
		for _, old := range n.entries {
			split.insert(old, depth, true)
		}
		return split.insert(e, depth, true)
	}
	i := trieSlot(e.hash, depth)
	if inPlace {
		n.children[i] = n.children[i].insert(e, depth+1, true)
		return n
	}
	children := *n.children
	children[i] = children[i].insert(e, depth+1, false)
	return &trieNode{children: &children}
}

// remove returns n without the entry equal to e (same key and node) and
// whether there was one. Emptied nodes are dropped.
func (n *trieNode) remove(e keyEntry, depth int) (*trieNode, bool) {
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
			entries := make([]keyEntry, 0, len(n.entries)-1)
			entries = append(entries, n.entries[:i]...)
			return &trieNode{entries: append(entries, n.entries[i+1:]...)}, true
		}
		return n, false
	}
	i := trieSlot(e.hash, depth)
	c, ok := n.children[i].remove(e, depth+1)
	if !ok {
		return n, false
	}
	children := *n.children
	children[i] = c
	if c == nil {
		empty := true
		for _, x := range children {
			empty = empty && x == nil
		}
		if empty {
			return nil, true
		}
	}
	return &trieNode{children: &children}, true
}
