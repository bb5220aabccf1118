package treekem

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/tree"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

var benchSizes = []int{10, 100, 1000, 10000}

type benchGroup struct {
	*group
	path *message.UpdatePath // leaf 0's commit on tree
}

var benchGroups = map[int]*benchGroup{}

func randomPub(tb testing.TB) []byte {
	k := make([]byte, 32) // any 32 bytes are an X25519 public key
	if _, err := rand.Read(k); err != nil {
		tb.Fatal(err)
	}
	return k
}

// benchGroupOf builds a fully populated n-member tree cheaply: members other
// than leaves 0 and 1 get random public keys and unsigned leaves (the
// benchmarks below neither validate them nor decrypt as them), every even
// leaf "commits" random public path keys, and finally leaf 0 commits for
// real so that leaves 0 and 1 hold every key on their path.
func benchGroupOf(b *testing.B, n int) *benchGroup {
	if g, ok := benchGroups[n]; ok {
		return g
	}
	g := &group{s: nil, states: make([]*PrivateState, 2), sigPriv: make([]*suite.SignaturePrivateKey, 2)}
	leaf0, sig0, enc0 := newLeaf(b, mustSuite())
	leaf1, sig1, enc1 := newLeaf(b, mustSuite())
	g.s = mustSuite()
	g.tree = tree.New(g.s, &leaf0)
	if _, err := g.tree.AddLeaf(&leaf1); err != nil {
		b.Fatal(err)
	}
	g.states[0], g.states[1] = NewPrivateState(0, enc0), NewPrivateState(1, enc1)
	g.sigPriv[0], g.sigPriv[1] = sig0, sig1
	for i := 2; i < n; i++ {
		l := leaf0
		l.EncryptionKey, l.SignatureKey = randomPub(b), randomPub(b)
		if _, err := g.tree.AddLeaf(&l); err != nil {
			b.Fatal(err)
		}
	}
	for l := 2; l < n; l += 2 {
		li := treemath.LeafIndex(l)
		keys := make([][]byte, len(g.tree.FilteredDirectPath(li)))
		for i := range keys {
			keys[i] = randomPub(b)
		}
		ph, err := g.tree.SetPathKeys(li, keys)
		if err != nil {
			b.Fatal(err)
		}
		nl := *g.tree.Leaf(li)
		nl.Source, nl.ParentHash, nl.EncryptionKey = message.LeafNodeSourceCommit, ph, randomPub(b)
		if err := g.tree.SetLeaf(li, &nl); err != nil {
			b.Fatal(err)
		}
	}
	gen, err := g.states[0].Generate(g.tree, *g.tree.Leaf(0), g.sigPriv[0], testContext(0))
	if err != nil {
		b.Fatal(err)
	}
	g.states[0] = gen.Private
	if g.states[1], err = g.states[1].WithJoinerPathSecret(g.tree, 0, gen.PathSecretFor(1)); err != nil {
		b.Fatal(err)
	}
	// The UpdatePath the Apply benchmark processes: leaf 0 commits again.
	next := g.tree.Clone()
	gen, err = g.states[0].Generate(next, *g.tree.Leaf(0), g.sigPriv[0], testContext(1))
	if err != nil {
		b.Fatal(err)
	}
	g.tree.RootHash()
	bg := &benchGroup{group: g, path: gen.Path}
	benchGroups[n] = bg
	return bg
}

// BenchmarkGenerate measures creating an UpdatePath in suite 1 on a fully
// populated tree: cloning the tree, fresh keys, parent hashes, re-signing
// the leaf, the new tree hash and one HPKE encryption per copath node.
func BenchmarkGenerate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("leaves=%d", n), func(b *testing.B) {
			g := benchGroupOf(b, n)
			leaf := *g.tree.Leaf(0)
			b.ResetTimer()
			for b.Loop() {
				if _, err := g.states[0].Generate(g.tree.Clone(), leaf, g.sigPriv[0], testContext(1)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApply measures processing that UpdatePath as the member whose
// path shares the most nodes with the committer's (leaf 1): cloning the
// tree, merging with parent-hash check, the tree hash, one HPKE decryption
// and deriving and checking every key up to the root.
func BenchmarkApply(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("leaves=%d", n), func(b *testing.B) {
			g := benchGroupOf(b, n)
			b.ResetTimer()
			for b.Loop() {
				if _, err := g.states[1].Apply(g.tree.Clone(), 0, g.path, testContext(1)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
