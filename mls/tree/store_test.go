package tree

import (
	"bytes"
	"sync"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// checkFresh compares tr's cached root hash, nodes and key index with a
// tree built afresh from its wire form.
func checkFresh(t *testing.T, what string, tr *Tree) {
	t.Helper()
	fresh, err := FromRatchetTree(tr.Suite(), tr.RatchetTree())
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if fresh.LeafCount() != tr.LeafCount() || !bytes.Equal(fresh.RootHash(), tr.RootHash()) {
		t.Fatalf("%s: cached root hash differs from a fresh tree's", what)
	}
	checkTreeIndex(t, tr)
}

func encodeTree(tr *Tree) []byte {
	rt := tr.RatchetTree()
	return codec.Marshal(&rt)
}

// TestCloneIsolation changes a tree and two clones of it in different
// ways, including truncation and re-extension across chunk boundaries, and
// checks that each keeps its own nodes and correct cached hashes.
func TestCloneIsolation(t *testing.T) {
	tr, members := buildTree(t, 100) // 199 nodes: four chunks, the last partial
	s := tr.Suite()
	tr.RootHash()
	a, b := tr.Clone(), tr.Clone()
	before := encodeTree(tr)

	for _, l := range []treemath.LeafIndex{99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 89, 88, 87, 86, 85, 84, 83, 82, 81, 80, 79, 78, 77, 76, 75, 74, 73, 72, 71, 70, 69, 68, 67, 66, 65, 64} {
		if err := a.RemoveLeaf(l); err != nil {
			t.Fatal(err)
		}
	}
	if a.LeafCount() != 64 {
		t.Fatalf("a has %d leaves after truncation", a.LeafCount())
	}
	checkFresh(t, "a truncated", a)
	newcomer := newMember(t, s, "newcomer")
	if _, err := a.AddLeaf(&newcomer.leaf); err != nil {
		t.Fatal(err)
	}
	checkFresh(t, "a re-extended", a)
	commitRandomPath(t, a, members[3], 3)
	checkFresh(t, "a after a commit", a)

	commitRandomPath(t, b, members[90], 90)
	if err := b.RemoveLeaf(40); err != nil {
		t.Fatal(err)
	}
	checkFresh(t, "b", b)

	if !bytes.Equal(encodeTree(tr), before) {
		t.Fatal("clones' changes reached the original")
	}
	checkFresh(t, "original", tr)
	// The original changes after cloning; the clones must not notice.
	aBefore, bBefore := encodeTree(a), encodeTree(b)
	commitRandomPath(t, tr, members[64], 64)
	checkFresh(t, "original after its commit", tr)
	if !bytes.Equal(encodeTree(a), aBefore) || !bytes.Equal(encodeTree(b), bBefore) {
		t.Fatal("original's change reached a clone")
	}
	checkFresh(t, "a at the end", a)
	checkFresh(t, "b at the end", b)
}

// TestConcurrentClones clones one tree from many goroutines, as members
// handling commits on one shared epoch do, and changes each clone; run it
// with -race.
func TestConcurrentClones(t *testing.T) {
	tr, members := buildTree(t, 40)
	tr.RootHash()
	before := encodeTree(tr)
	var wg sync.WaitGroup
	hashes := make([][]byte, 8)
	for i := range hashes {
		wg.Go(func() {
			c := tr.Clone()
			keys := make([][]byte, len(c.FilteredDirectPath(treemath.LeafIndex(i))))
			for j := range keys {
				keys[j] = bytes.Repeat([]byte{byte(i), byte(j)}, 16)
			}
			ph, err := c.SetPathKeys(treemath.LeafIndex(i), keys)
			if err != nil {
				t.Error(err)
				return
			}
			leaf := members[i].leaf
			leaf.ParentHash = ph
			leaf.Source = message.LeafNodeSourceCommit
			if err := c.SetLeaf(treemath.LeafIndex(i), &leaf); err != nil {
				t.Error(err)
				return
			}
			hashes[i] = c.RootHash()
		})
	}
	wg.Wait()
	if !bytes.Equal(encodeTree(tr), before) {
		t.Fatal("a clone's change reached the original")
	}
	for i := range hashes {
		for j := range i {
			if bytes.Equal(hashes[i], hashes[j]) {
				t.Fatalf("clones %d and %d agree", i, j)
			}
		}
	}
}

// TestPlace checks the banded layout: place and nodeAt are inverses, no
// two nodes share a slot, slot 63 is never used, and every node below a
// width lies in a chunk that bandChunks counts for that width.
func TestPlace(t *testing.T) {
	const width = 1<<13 + 77
	seen := make(map[[3]int]treemath.NodeIndex)
	for x := treemath.NodeIndex(0); x < width; x++ {
		b, c, i := place(x)
		if i == chunkSize-1 {
			t.Fatalf("node %d in slot %d", x, i)
		}
		if got := nodeAt(b, c, i); got != x {
			t.Fatalf("nodeAt(place(%d)) = %d", x, got)
		}
		if prev, dup := seen[[3]int{b, c, i}]; dup {
			t.Fatalf("nodes %d and %d share band %d chunk %d slot %d", prev, x, b, c, i)
		}
		seen[[3]int{b, c, i}] = x
		if w := int(x) + 1; c >= bandChunks(b, w) {
			t.Fatalf("node %d: chunk %d of band %d, but width %d has %d", x, c, b, w, bandChunks(b, w))
		}
	}
	for _, x := range []treemath.NodeIndex{1<<31 - 1, 1<<32 - 2, 1<<32 - 1, 3<<30 - 1} {
		if b, c, i := place(x); nodeAt(b, c, i) != x || b >= bandCount {
			t.Fatalf("node %#x: band %d chunk %d slot %d", x, b, c, i)
		}
	}
}
