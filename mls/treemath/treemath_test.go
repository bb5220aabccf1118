package treemath

import (
	"fmt"
	"slices"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
)

type treeMathCase struct {
	NLeaves LeafCount    `json:"n_leaves"`
	NNodes  uint32       `json:"n_nodes"`
	Root    NodeIndex    `json:"root"`
	Left    []*NodeIndex `json:"left"`
	Right   []*NodeIndex `json:"right"`
	Parent  []*NodeIndex `json:"parent"`
	Sibling []*NodeIndex `json:"sibling"`
}

func checkOptional(what string, i int, want *NodeIndex, got NodeIndex, ok bool) error {
	switch {
	case want == nil && ok:
		return fmt.Errorf("%s[%d] = %d, want none", what, i, got)
	case want != nil && !ok:
		return fmt.Errorf("%s[%d] = none, want %d", what, i, *want)
	case want != nil && got != *want:
		return fmt.Errorf("%s[%d] = %d, want %d", what, i, got, *want)
	}
	return nil
}

func checkTreeMath(c *treeMathCase) error {
	n := c.NLeaves
	if got := n.Width(); got != c.NNodes {
		return fmt.Errorf("width = %d, want %d", got, c.NNodes)
	}
	if got := n.Root(); got != c.Root {
		return fmt.Errorf("root = %d, want %d", got, c.Root)
	}
	for _, l := range [][]*NodeIndex{c.Left, c.Right, c.Parent, c.Sibling} {
		if len(l) != int(c.NNodes) {
			return fmt.Errorf("vector has %d entries for %d nodes", len(l), c.NNodes)
		}
	}
	for i := range int(c.NNodes) {
		x := NodeIndex(i)
		got, ok := Left(x)
		if err := checkOptional("left", i, c.Left[i], got, ok); err != nil {
			return err
		}
		got, ok = Right(x)
		if err := checkOptional("right", i, c.Right[i], got, ok); err != nil {
			return err
		}
		got, ok = n.Parent(x)
		if err := checkOptional("parent", i, c.Parent[i], got, ok); err != nil {
			return err
		}
		got, ok = n.Sibling(x)
		if err := checkOptional("sibling", i, c.Sibling[i], got, ok); err != nil {
			return err
		}
	}
	return nil
}

func TestTreeMathVectors(t *testing.T) {
	vectors.Run(t, "tree-math.json", checkTreeMath, nil)
}

// naiveParent finds the parent by searching the nodes one level up for the
// one whose children include x: slow, but independent of the bit tricks.
func naiveParent(x NodeIndex, n LeafCount) (NodeIndex, bool) {
	for p := NodeIndex(1); uint32(p) < n.Width(); p += 2 {
		l, _ := Left(p)
		r, _ := Right(p)
		if l == x || r == x {
			return p, true
		}
	}
	return 0, false
}

func TestPathsAgainstNaiveDefinitions(t *testing.T) {
	for _, n := range []LeafCount{1, 2, 4, 8, 16, 64} {
		for i := range n.Width() {
			x := NodeIndex(i)
			// Direct path: the chain of parents up to the root.
			var want []NodeIndex
			for y, ok := naiveParent(x, n); ok; y, ok = naiveParent(y, n) {
				want = append(want, y)
			}
			if got := n.DirectPath(x); !slices.Equal(got, want) {
				t.Fatalf("n=%d: DirectPath(%d) = %v, want %v", n, x, got, want)
			}
			// Copath: the sibling of x and of each path node but the root.
			var co []NodeIndex
			for _, y := range append([]NodeIndex{x}, want...) {
				if s, ok := n.Sibling(y); ok {
					co = append(co, s)
				}
			}
			if got := n.Copath(x); !slices.Equal(got, co) {
				t.Fatalf("n=%d: Copath(%d) = %v, want %v", n, x, got, co)
			}
			if n.PathLen(x) != len(want) {
				t.Fatalf("n=%d: PathLen(%d) = %d, want %d", n, x, n.PathLen(x), len(want))
			}
			// Common ancestor: the lowest node on both paths (x, y included).
			for j := range n.Width() {
				y := NodeIndex(j)
				px := append([]NodeIndex{x}, want...)
				py := append([]NodeIndex{y}, n.DirectPath(y)...)
				var lowest NodeIndex
				found := false
				for _, a := range px {
					if slices.Contains(py, a) {
						lowest, found = a, true
						break // px is ordered bottom-up
					}
				}
				if !found {
					t.Fatalf("n=%d: no common ancestor of %d and %d", n, x, y)
				}
				if got := CommonAncestor(x, y); got != lowest {
					t.Fatalf("n=%d: CommonAncestor(%d, %d) = %d, want %d", n, x, y, got, lowest)
				}
				if got := InSubtree(x, y); got != slices.Contains(px, y) {
					t.Fatalf("n=%d: InSubtree(%d, %d) = %v", n, x, y, got)
				}
			}
		}
	}
}

func TestLeafConversions(t *testing.T) {
	for l := LeafIndex(0); l < 100; l++ {
		x := l.Node()
		if !x.IsLeaf() || x.Level() != 0 {
			t.Fatalf("leaf %d maps to non-leaf node %d", l, x)
		}
		if back, ok := x.Leaf(); !ok || back != l {
			t.Fatalf("node %d maps back to leaf %d, %v", x, back, ok)
		}
		if _, ok := (x + 1).Leaf(); ok {
			t.Fatalf("parent node %d reported as a leaf", x+1)
		}
	}
}

func TestLog2AndLeafCountFor(t *testing.T) {
	for _, c := range []struct{ x, want uint32 }{{0, 0}, {1, 0}, {2, 1}, {3, 1}, {4, 2}, {1023, 9}, {1 << 31, 31}, {1<<32 - 1, 31}} {
		if got := Log2(c.x); got != c.want {
			t.Errorf("Log2(%d) = %d, want %d", c.x, got, c.want)
		}
	}
	for _, c := range []struct {
		members uint32
		want    LeafCount
	}{{0, 1}, {1, 1}, {2, 2}, {3, 4}, {5, 8}, {10000, 16384}, {1 << 31, 1 << 31}} {
		if got := LeafCountFor(c.members); got != c.want {
			t.Errorf("LeafCountFor(%d) = %d, want %d", c.members, got, c.want)
		}
	}
}

func TestOutOfTreeNodes(t *testing.T) {
	n := LeafCount(4)
	for _, x := range []NodeIndex{7, 8, 100, 1<<32 - 1} {
		if _, ok := n.Parent(x); ok {
			t.Errorf("Parent(%d) found in a 4-leaf tree", x)
		}
		if _, ok := n.Sibling(x); ok {
			t.Errorf("Sibling(%d) found in a 4-leaf tree", x)
		}
		if p := n.DirectPath(x); p != nil {
			t.Errorf("DirectPath(%d) = %v in a 4-leaf tree", x, p)
		}
		if p := n.Copath(x); p != nil {
			t.Errorf("Copath(%d) = %v in a 4-leaf tree", x, p)
		}
	}
}

func TestLargestTree(t *testing.T) {
	n := MaxLeaves
	if n.Width() != 1<<32-1 || n.Root() != 1<<31-1 {
		t.Fatalf("width %d root %d", n.Width(), n.Root())
	}
	last := LeafIndex(n - 1).Node()
	p := n.DirectPath(last)
	if len(p) != 31 || p[len(p)-1] != n.Root() {
		t.Fatalf("direct path of the last leaf: %d nodes ending at %d", len(p), p[len(p)-1])
	}
}

// Leaf counts that RFC 9420 never produces must not hang or panic.
func TestInvalidLeafCountsTerminate(t *testing.T) {
	for _, n := range []LeafCount{0, 3, 5, 6, 7, 1000, 1<<31 + 1, 1<<32 - 1} {
		for _, x := range []NodeIndex{0, 1, 2, 5, 999, 1<<32 - 2, 1<<32 - 1} {
			_ = n.DirectPath(x)
			_ = n.Copath(x)
			n.Parent(x)
			n.Sibling(x)
		}
	}
}

func TestPathsDoNotAllocate(t *testing.T) {
	n := LeafCountFor(10000)
	buf := make([]NodeIndex, 0, 32)
	allocs := testing.AllocsPerRun(100, func() {
		for l := LeafIndex(0); l < 10000; l += 97 {
			buf = n.AppendDirectPath(buf[:0], l.Node())
			buf = n.AppendCopath(buf[:0], l.Node())
			CommonAncestor(l.Node(), 0)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
}

func BenchmarkCopath10000(b *testing.B) {
	n := LeafCountFor(10000)
	buf := make([]NodeIndex, 0, 32)
	for b.Loop() {
		for l := LeafIndex(0); l < 10000; l++ {
			buf = n.AppendCopath(buf[:0], l.Node())
		}
	}
}
