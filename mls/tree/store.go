package tree

import (
	"math/bits"
	"sync/atomic"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// nodeStore holds a tree's nodes and cached tree hashes in fixed-size
// chunks that clones share, so that cloning the tree of a large group for
// each commit copies one pointer per chunk instead of every node, and a
// commit then copies only the chunks its paths touch.
//
// A chunk holds a complete subtree six levels high (bands, below), so a
// path from a leaf to the root crosses one chunk per six levels: a commit
// in a tree of 10,000 members copies 3 chunks per path instead of the 10 a
// chunk of 64 consecutive indexes would cost, one per level above the
// sixth.
//
// A chunk may be written in place only by the store that owns it. Clone
// gives the new store a fresh owner (it owns nothing) and marks the old
// one shared; the old store takes a fresh owner too before its next
// write. So neither sees the other's changes, and Clone itself writes
// nothing but an atomic flag, which keeps concurrent clones of one tree
// (many members handling commits on one shared Public) race-free.
type nodeStore struct {
	width int
	// bands[b] holds the chunks of the nodes at levels 6b to 6b+5.
	bands [bandCount][]*chunk
	owner *storeOwner
	// shared is set by clone: every chunk may be referenced by another
	// store, so none may be written in place until the owner changes.
	shared atomic.Bool
}

// Node x at level L (its number of trailing one bits) lies in band
// b = L/6. Its low 6b bits are all ones; the next six bits place it in its
// chunk (slot (x>>6b) & 63, the index of the same node in a tree six
// levels high), and the bits above those name the chunk (x >> (6b+6)).
// Slot 63 of every chunk stays empty: it would be a node of the next band.
const (
	chunkBits = 6
	chunkSize = 1 << chunkBits
	// bandCount covers levels 0 to 35, more than a 32-bit node index has.
	bandCount = 6
)

// chunk holds the nodes of one subtree six levels high and their cached
// hashes. Entries at or beyond the store's width are always nil.
type chunk struct {
	owner  *storeOwner
	nodes  [chunkSize]*message.Node
	hashes [chunkSize][]byte
}

// storeOwner identifies a store; only its address matters, and the field
// keeps distinct allocations at distinct addresses.
type storeOwner struct{ _ byte }

// place returns the band, chunk and slot of node x.
func place(x treemath.NodeIndex) (band, chunk, slot int) {
	band = bits.TrailingZeros32(^uint32(x)) / chunkBits
	shift := band * chunkBits
	return band, int(uint32(x) >> (shift + chunkBits)), int(uint32(x)>>shift) & (chunkSize - 1)
}

// nodeAt is the node index of a band's chunk and slot, the inverse of
// place.
func nodeAt(band, chunk, slot int) treemath.NodeIndex {
	shift := band * chunkBits
	return treemath.NodeIndex(uint32(chunk)<<(shift+chunkBits) | uint32(slot)<<shift | (1<<shift - 1))
}

// bandChunks is the number of chunks band b needs for a tree of the given
// width: enough to reach the highest index below width.
func bandChunks(b, width int) int {
	first := 1<<(b*chunkBits) - 1 // the leftmost node at level 6b
	if width <= first {
		return 0
	}
	return (width-1)>>(b*chunkBits+chunkBits) + 1
}

// init makes s an empty store of the given width.
func (s *nodeStore) init(width int) {
	s.width, s.bands, s.owner = 0, [bandCount][]*chunk{}, new(storeOwner)
	s.shared.Store(false)
	s.resize(width)
}

func (s *nodeStore) node(x treemath.NodeIndex) *message.Node {
	b, c, i := place(x)
	return s.bands[b][c].nodes[i]
}

func (s *nodeStore) hash(x treemath.NodeIndex) []byte {
	b, c, i := place(x)
	return s.bands[b][c].hashes[i]
}

func (s *nodeStore) setNode(x treemath.NodeIndex, n *message.Node) {
	b, c, i := place(x)
	s.writable(b, c).nodes[i] = n
}

func (s *nodeStore) setHash(x treemath.NodeIndex, h []byte) {
	b, c, i := place(x)
	s.writable(b, c).hashes[i] = h
}

// writable returns chunk c of band b, copying it first unless s owns it.
func (s *nodeStore) writable(b, c int) *chunk {
	if s.shared.Load() {
		s.owner = new(storeOwner)
		s.shared.Store(false)
	}
	ch := s.bands[b][c]
	if ch.owner != s.owner {
		cp := *ch
		cp.owner = s.owner
		ch = &cp
		s.bands[b][c] = ch
	}
	return ch
}

// own makes every chunk writable in place, so that goroutines may then
// fill disjoint entries concurrently.
func (s *nodeStore) own() {
	for b := range s.bands {
		for c := range s.bands[b] {
			s.writable(b, c)
		}
	}
}

// cloneInto makes c a store with the same contents that shares s's
// chunks.
func (s *nodeStore) cloneInto(c *nodeStore) {
	s.shared.Store(true)
	c.width, c.owner = s.width, new(storeOwner)
	for b := range s.bands {
		c.bands[b] = append([]*chunk(nil), s.bands[b]...)
	}
	c.shared.Store(false)
}

// resize changes the width. New entries are nil; entries cut off are
// cleared so that a later extension finds them blank with no cached hash.
func (s *nodeStore) resize(width int) {
	for b := range s.bands {
		n := bandChunks(b, width)
		switch {
		case n > len(s.bands[b]):
			for len(s.bands[b]) < n {
				s.bands[b] = append(s.bands[b], &chunk{owner: s.owner})
			}
		case n < len(s.bands[b]):
			clear(s.bands[b][n:])
			s.bands[b] = s.bands[b][:n]
		}
		if width >= s.width || n == 0 {
			continue
		}
		// The band's last chunk may reach past the new width.
		last := n - 1
		if nodeAt(b, last, chunkSize-2) < treemath.NodeIndex(width) {
			continue // its highest index is below width
		}
		ch := s.writable(b, last)
		for i := range chunkSize - 1 {
			if nodeAt(b, last, i) >= treemath.NodeIndex(width) {
				ch.nodes[i], ch.hashes[i] = nil, nil
			}
		}
	}
	s.width = width
}

// appendNodes appends the nodes up to end to dst, in index order.
func (s *nodeStore) appendNodes(dst []*message.Node, end int) []*message.Node {
	for x := range end {
		dst = append(dst, s.node(treemath.NodeIndex(x)))
	}
	return dst
}
