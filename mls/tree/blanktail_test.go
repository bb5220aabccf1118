package tree

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// naiveResolution is §4.1.1's definition, walking every node.
func naiveResolution(t *Tree, x treemath.NodeIndex) []treemath.NodeIndex {
	if uint64(x) >= uint64(t.store.width) {
		return nil
	}
	if n := t.store.node(x); n != nil {
		out := []treemath.NodeIndex{x}
		if n.Parent != nil {
			for _, l := range n.Parent.UnmergedLeaves {
				out = append(out, treemath.LeafIndex(l).Node())
			}
		}
		return out
	}
	if x.IsLeaf() {
		return nil
	}
	l, _ := treemath.Left(x)
	r, _ := treemath.Right(x)
	return append(naiveResolution(t, l), naiveResolution(t, r)...)
}

// Resolutions skip the blank leaves on the right of a tree (Tree.used);
// they must still be those of the definition as leaves come and go, the
// rightmost included, and in clones.
func TestResolutionsWithBlankTail(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	rng := rand.New(rand.NewPCG(1, 2))
	m := newMember(t, s, "m0")
	tr := New(s, m.signed(t, s, 0, nil))
	for step := range 300 {
		members := []treemath.LeafIndex{}
		tr.Members(func(l treemath.LeafIndex, _ *message.LeafNode) bool { members = append(members, l); return true })
		if len(members) > 1 && rng.IntN(3) == 0 {
			// Remove the rightmost member half of the time.
			victim := members[len(members)-1]
			if rng.IntN(2) == 0 {
				victim = members[1+rng.IntN(len(members)-1)]
			}
			if err := tr.RemoveLeaf(victim); err != nil {
				t.Fatal(err)
			}
		} else {
			nm := newMember(t, s, "m")
			if _, err := tr.AddLeaf(&nm.leaf); err != nil {
				t.Fatal(err)
			}
		}
		if step%3 == 0 {
			tr = tr.Clone()
		}
		for x := range treemath.NodeIndex(tr.Width()) {
			if got, want := tr.Resolution(x), naiveResolution(tr, x); !slices.Equal(got, want) {
				t.Fatalf("step %d: resolution of %d = %v, want %v", step, x, got, want)
			}
			if got, want := tr.resolutionEmpty(x), len(naiveResolution(tr, x)) == 0; got != want {
				t.Fatalf("step %d: node %d empty %v, want %v", step, x, got, want)
			}
		}
	}
}
