package tree

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// encodingVersion is the first byte of a stored tree, so that the format
// can change without misreading old rows.
const encodingVersion = 1

// MarshalBinary encodes the tree for storage: a format version, the cipher
// suite, the leaf count and the wire ratchet tree. Hashes are not stored;
// they are recomputed on demand.
func (t *Tree) MarshalBinary() ([]byte, error) {
	w := codec.NewWriter(64 + 256*t.store.width/2)
	stored.WriteHeader(w, encodingVersion, t.suite.ID())
	w.Uint32(uint32(t.leaves))
	t.RatchetTree().MarshalMLS(w)
	return w.Bytes(), nil
}

// UnmarshalBinary replaces t with a tree encoded by MarshalBinary. It
// checks the structure as FromRatchetTree does, not the contents: a stored
// tree was validated when it was first accepted.
func (t *Tree) UnmarshalBinary(data []byte) error {
	r := codec.NewReader(data)
	s := stored.ReadHeader(r, "tree", encodingVersion, ErrInvalidState)
	leaves := treemath.LeafCount(r.Uint32("tree.leaf_count"))
	var rt message.RatchetTree
	rt.UnmarshalMLS(r)
	if err := r.Finish("tree"); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	nt, err := FromRatchetTree(s, rt)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if nt.leaves != leaves {
		return fmt.Errorf("%w: leaf count %d, tree has %d", ErrInvalidState, leaves, nt.leaves)
	}
	t.suite, t.leaves, t.enc, t.sig, t.stats, t.used = nt.suite, nt.leaves, nt.enc, nt.sig, nt.stats, nt.used
	// nt is dropped, so t takes over its chunks and their ownership.
	t.store.width, t.store.bands, t.store.owner = nt.store.width, nt.store.bands, nt.store.owner
	t.store.shared.Store(false)
	return nil
}
