package tree

import (
	"bytes"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// The operations below change t in place. A caller that must keep the
// previous epoch's tree works on a Clone. When an operation fails, t may
// have been partly changed and must be discarded.

// AddLeaf places a new member's leaf as an Add proposal does (§12.1.1): in
// the leftmost blank leaf, or in the first leaf of a new right half if the
// tree has none, and lists it as unmerged at every non-blank parent above.
// It returns the new member's leaf index.
func (t *Tree) AddLeaf(leaf *message.LeafNode) (treemath.LeafIndex, error) {
	l, found := t.leftmostBlankLeaf()
	if !found {
		if t.leaves >= treemath.MaxLeaves {
			return 0, ErrTreeFull
		}
		l = treemath.LeafIndex(t.leaves)
		t.extend()
	}
	x := l.Node()
	for p, ok := t.leaves.Parent(x); ok; p, ok = t.leaves.Parent(p) {
		old := t.store.node(p)
		if old == nil {
			continue
		}
		unmerged := make([]uint32, len(old.Parent.UnmergedLeaves), len(old.Parent.UnmergedLeaves)+1)
		copy(unmerged, old.Parent.UnmergedLeaves)
		t.set(p, parentNode(&message.ParentNode{
			EncryptionKey:  old.Parent.EncryptionKey,
			ParentHash:     old.Parent.ParentHash,
			UnmergedLeaves: append(unmerged, uint32(l)),
		}))
	}
	t.set(x, leafNode(leaf))
	return l, nil
}

func (t *Tree) leftmostBlankLeaf() (treemath.LeafIndex, bool) {
	for i := 0; i < t.store.width; i += 2 {
		if t.store.node(treemath.NodeIndex(i)) == nil {
			return treemath.LeafIndex(i / 2), true
		}
	}
	return 0, false
}

// extend doubles the leaf count. The old tree becomes the left subtree with
// unchanged node indices, so every cached hash stays valid.
func (t *Tree) extend() {
	t.leaves *= 2
	t.store.resize(int(t.leaves.Width()))
}

// UpdateLeaf applies an Update proposal (§12.1.2): it replaces the
// member's leaf and blanks the nodes above it.
func (t *Tree) UpdateLeaf(l treemath.LeafIndex, leaf *message.LeafNode) error {
	if err := t.checkMember(l); err != nil {
		return err
	}
	t.blankDirectPath(l.Node())
	t.set(l.Node(), leafNode(leaf))
	return nil
}

// RemoveLeaf applies a Remove proposal (§12.1.3): it blanks the member's
// leaf and the nodes above it, then truncates the tree while its right half
// is empty.
func (t *Tree) RemoveLeaf(l treemath.LeafIndex) error {
	if err := t.checkMember(l); err != nil {
		return err
	}
	t.blankDirectPath(l.Node())
	t.set(l.Node(), nil)
	t.truncate()
	return nil
}

func (t *Tree) checkMember(l treemath.LeafIndex) error {
	if !t.leaves.ContainsLeaf(l) {
		return fmt.Errorf("%w: %d", ErrLeafOutOfRange, l)
	}
	if t.store.node(l.Node()) == nil {
		return fmt.Errorf("%w: %d", ErrBlankLeaf, l)
	}
	return nil
}

func (t *Tree) blankDirectPath(x treemath.NodeIndex) {
	for p, ok := t.leaves.Parent(x); ok; p, ok = t.leaves.Parent(p) {
		if t.store.node(p) != nil {
			t.set(p, nil)
		}
	}
}

// truncate shrinks the tree to 2^d leaves, the fewest that still hold the
// rightmost non-blank leaf. The surviving left subtree keeps its node
// indices and cached hashes.
func (t *Tree) truncate() {
	last := -1
	for i := t.store.width - 1; i >= 0; i -= 2 {
		if t.store.node(treemath.NodeIndex(i)) != nil {
			last = i / 2
			break
		}
	}
	leaves := treemath.LeafCountFor(uint32(last + 1))
	if leaves >= t.leaves {
		return
	}
	t.store.resize(int(leaves.Width()))
	t.leaves = leaves
}

// SetPathKeys installs new parent nodes along the filtered direct path of
// leaf l, as merging an UpdatePath does (§7.5): it blanks l's direct path,
// sets each filtered-direct-path node to the matching key with no unmerged
// leaves, and fills in their parent hashes from the root down (§7.9). It
// returns the parent hash that l's new LeafNode must carry. The leaf itself
// is left for SetLeaf, because a committer must sign over that parent hash
// first.
func (t *Tree) SetPathKeys(l treemath.LeafIndex, keys [][]byte) ([]byte, error) {
	if err := t.checkMember(l); err != nil {
		return nil, err
	}
	fdp := t.FilteredDirectPath(l)
	if len(fdp) != len(keys) {
		return nil, fmt.Errorf("%w: %d nodes for a filtered direct path of %d", ErrPathLength, len(keys), len(fdp))
	}
	x := l.Node()
	t.blankDirectPath(x)
	hs := t.newHasher()
	ph := []byte{}
	for i := len(fdp) - 1; i >= 0; i-- {
		p := fdp[i]
		t.set(p, parentNode(&message.ParentNode{
			EncryptionKey:  keys[i],
			ParentHash:     ph,
			UnmergedLeaves: []uint32{},
		}))
		// The new node has no unmerged leaves, so the original sibling
		// tree hash is the sibling's current (cached) hash.
		ph = hs.parentHashInput(keys[i], ph, t.computeHash(hs, CopathChild(p, x)))
	}
	return ph, nil
}

// SetLeaf replaces the LeafNode at a member's leaf without touching the
// nodes above it (a committer's re-signed leaf after SetPathKeys).
func (t *Tree) SetLeaf(l treemath.LeafIndex, leaf *message.LeafNode) error {
	if err := t.checkMember(l); err != nil {
		return err
	}
	t.set(l.Node(), leafNode(leaf))
	return nil
}

// MergeUpdatePath merges a received UpdatePath from the member at sender
// (§7.5): the path's keys replace the sender's filtered direct path, and the
// path's LeafNode, which must carry the parent hash that results, replaces
// the sender's leaf. The LeafNode's other properties (signature,
// capabilities, source) are for ValidateLeafNode. The tree keeps pointers
// into path, which must not be modified afterwards.
func (t *Tree) MergeUpdatePath(sender treemath.LeafIndex, path *message.UpdatePath) error {
	keys := make([][]byte, len(path.Nodes))
	for i := range path.Nodes {
		keys[i] = path.Nodes[i].EncryptionKey
	}
	ph, err := t.SetPathKeys(sender, keys)
	if err != nil {
		return err
	}
	if path.LeafNode.Source != message.LeafNodeSourceCommit {
		return fmt.Errorf("%w: update path leaf has source %d, want commit", ErrLeafNodeInvalid, path.LeafNode.Source)
	}
	if !bytes.Equal(ph, path.LeafNode.ParentHash) {
		return fmt.Errorf("%w: committer %d's leaf", ErrParentHashMismatch, sender)
	}
	leaf := path.LeafNode
	t.set(sender.Node(), leafNode(&leaf))
	return nil
}
