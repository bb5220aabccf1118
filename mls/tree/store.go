package tree

import (
	"sync/atomic"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// nodeStore holds a tree's nodes and cached tree hashes in fixed-size
// chunks that clones share, so that cloning the tree of a large group for
// each commit copies one pointer per chunk instead of every node, and a
// commit then copies only the chunks its paths touch.
//
// A chunk may be written in place only by the store that owns it. Clone
// gives the new store a fresh owner (it owns nothing) and marks the old
// one shared; the old store takes a fresh owner too before its next
// write. So neither sees the other's changes, and Clone itself writes
// nothing but an atomic flag, which keeps concurrent clones of one tree
// (many members handling commits on one shared Public) race-free.
type nodeStore struct {
	width  int
	chunks []*chunk
	owner  *storeOwner
	// shared is set by clone: every chunk may be referenced by another
	// store, so none may be written in place until the owner changes.
	shared atomic.Bool
}

const (
	chunkBits = 6
	chunkSize = 1 << chunkBits
)

// chunk holds chunkSize consecutive nodes and their cached hashes. Entries
// at or beyond the store's width are always nil.
type chunk struct {
	owner  *storeOwner
	nodes  [chunkSize]*message.Node
	hashes [chunkSize][]byte
}

// storeOwner identifies a store; only its address matters, and the field
// keeps distinct allocations at distinct addresses.
type storeOwner struct{ _ byte }

// init makes s an empty store of the given width.
func (s *nodeStore) init(width int) {
	s.width, s.chunks, s.owner = 0, nil, new(storeOwner)
	s.shared.Store(false)
	s.resize(width)
}

func (s *nodeStore) node(x treemath.NodeIndex) *message.Node {
	return s.chunks[x>>chunkBits].nodes[x&(chunkSize-1)]
}

func (s *nodeStore) hash(x treemath.NodeIndex) []byte {
	return s.chunks[x>>chunkBits].hashes[x&(chunkSize-1)]
}

func (s *nodeStore) setNode(x treemath.NodeIndex, n *message.Node) {
	s.writable(int(x >> chunkBits)).nodes[x&(chunkSize-1)] = n
}

func (s *nodeStore) setHash(x treemath.NodeIndex, h []byte) {
	s.writable(int(x >> chunkBits)).hashes[x&(chunkSize-1)] = h
}

// writable returns chunk i, copying it first unless s owns it.
func (s *nodeStore) writable(i int) *chunk {
	if s.shared.Load() {
		s.owner = new(storeOwner)
		s.shared.Store(false)
	}
	c := s.chunks[i]
	if c.owner != s.owner {
		cp := *c
		cp.owner = s.owner
		c = &cp
		s.chunks[i] = c
	}
	return c
}

// own makes every chunk writable in place, so that goroutines may then
// fill disjoint entries concurrently.
func (s *nodeStore) own() {
	for i := range s.chunks {
		s.writable(i)
	}
}

// cloneInto makes c a store with the same contents that shares s's
// chunks.
func (s *nodeStore) cloneInto(c *nodeStore) {
	s.shared.Store(true)
	c.width, c.owner = s.width, new(storeOwner)
	c.chunks = make([]*chunk, len(s.chunks))
	copy(c.chunks, s.chunks)
	c.shared.Store(false)
}

// resize changes the width. New entries are nil; entries cut off are
// cleared so that a later extension finds them blank with no cached hash.
func (s *nodeStore) resize(width int) {
	n := (width + chunkSize - 1) / chunkSize
	switch {
	case width > s.width:
		for len(s.chunks) < n {
			s.chunks = append(s.chunks, &chunk{owner: s.owner})
		}
	case width < s.width:
		clear(s.chunks[n:])
		s.chunks = s.chunks[:n]
		if off := width % chunkSize; off != 0 {
			c := s.writable(n - 1)
			clear(c.nodes[off:])
			clear(c.hashes[off:])
		}
	}
	s.width = width
}

// appendNodes appends the nodes up to end to dst.
func (s *nodeStore) appendNodes(dst []*message.Node, end int) []*message.Node {
	for i := 0; i < end; i += chunkSize {
		dst = append(dst, s.chunks[i/chunkSize].nodes[:min(chunkSize, end-i)]...)
	}
	return dst
}
