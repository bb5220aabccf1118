package tree

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// indexModel is the multiset of (key, node) entries an index must hold.
type indexModel map[string][]treemath.NodeIndex

func (m indexModel) clone() indexModel {
	c := indexModel{}
	for k, v := range m {
		c[k] = slices.Clone(v)
	}
	return c
}

func checkAgainstModel(t *testing.T, ix keyIndex, m indexModel, keys [][]byte) {
	t.Helper()
	for _, k := range keys {
		var got []treemath.NodeIndex
		ix.find(k, func(x treemath.NodeIndex) bool { got = append(got, x); return true })
		want := slices.Clone(m[string(k)])
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("key %x: got nodes %v, want %v", k, got, want)
		}
	}
}

// TestKeyIndexPersistent applies random additions and removals, with keys
// held by several nodes, and checks every earlier version of the index
// still answers as it did. Between versions the edits share an owner and
// change their own trie nodes in place; a version is kept by moving to a
// new owner, as a tree does after Clone.
func TestKeyIndexPersistent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([][]byte, 3000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%d", i)
	}
	built := newKeyIndex()
	model := indexModel{}
	owner := new(storeOwner)
	for i := range 2000 {
		k, x := keys[i], treemath.NodeIndex(i)
		built = built.with(k, x, owner)
		model[string(k)] = append(model[string(k)], x)
	}
	type version struct {
		ix    keyIndex
		model indexModel
	}
	versions := []version{{built, model.clone()}}
	ix := built
	owner = new(storeOwner)
	for step := range 6000 {
		k := keys[rng.IntN(len(keys))]
		holders := model[string(k)]
		if len(holders) > 0 && rng.IntN(2) == 0 {
			x := holders[rng.IntN(len(holders))]
			ix = ix.without(k, x, owner)
			i := slices.Index(holders, x)
			model[string(k)] = slices.Delete(holders, i, i+1)
		} else {
			x := treemath.NodeIndex(rng.IntN(64))
			ix = ix.with(k, x, owner)
			model[string(k)] = append(holders, x)
		}
		// Removing an entry that is not there changes nothing.
		ix = ix.without(k, 1<<30, owner)
		if step%500 == 0 {
			versions = append(versions, version{ix, model.clone()})
			owner = new(storeOwner)
		}
	}
	versions = append(versions, version{ix, model})
	for _, v := range versions {
		checkAgainstModel(t, v.ix, v.model, keys)
	}
	// Removing everything leaves an empty trie.
	for k, xs := range model {
		for _, x := range xs {
			ix = ix.without([]byte(k), x, owner)
		}
	}
	if ix.root != nil {
		t.Fatal("index not empty after removing every entry")
	}
}

// checkTreeIndex compares a tree's index and member stats with those built
// afresh from its nodes.
func checkTreeIndex(t *testing.T, tr *Tree) {
	t.Helper()
	fresh := &Tree{}
	tr.store.cloneInto(&fresh.store)
	fresh.buildIndex()
	if fmt.Sprint(fresh.stats) != fmt.Sprint(tr.stats) {
		t.Fatalf("member stats %v, rebuilt %v", tr.stats, fresh.stats)
	}
	for i := range tr.store.width {
		x := treemath.NodeIndex(i)
		n := tr.store.node(x)
		if n == nil {
			continue
		}
		for _, c := range []struct {
			ix, fresh keyIndex
			key       []byte
		}{{tr.enc, fresh.enc, nodeEncryptionKey(n)}} {
			var got, want []treemath.NodeIndex
			c.ix.find(c.key, func(y treemath.NodeIndex) bool { got = append(got, y); return true })
			c.fresh.find(c.key, func(y treemath.NodeIndex) bool { want = append(want, y); return true })
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) || !slices.Contains(got, x) {
				t.Fatalf("node %d: index has %v, rebuilt %v", x, got, want)
			}
		}
		if n.Leaf != nil {
			if l, ok := tr.LeafWithSignatureKey(n.Leaf.SignatureKey); !ok || l.Node() != x {
				t.Fatalf("leaf %d: signature key found at %d, %v", x/2, l, ok)
			}
		}
	}
}

// TestTreeIndexFollowsChanges checks that the key index and member stats
// follow every kind of change, and that a clone's changes do not reach
// the tree it was cloned from, or the reverse.
func TestTreeIndexFollowsChanges(t *testing.T) {
	tr, members := buildTree(t, 13)
	s := tr.Suite()
	checkTreeIndex(t, tr)
	before := tr.RatchetTree()
	c := tr.Clone()
	newcomer := newMember(t, s, "newcomer")
	newcomer.leaf.Credential = message.Credential{Type: 0xf000, Identity: []byte("x")}
	newcomer.leaf.Capabilities.Credentials = []message.CredentialType{message.CredentialBasic, 0xf000}
	steps := []func() error{
		func() error { return c.RemoveLeaf(12) },
		func() error { return c.RemoveLeaf(3) },
		func() error {
			updated := members[5].signed(t, s, 5, func(l *message.LeafNode) { l.EncryptionKey = randomKey(t) })
			return c.UpdateLeaf(5, updated)
		},
		func() error { _, err := c.AddLeaf(&newcomer.leaf); return err },
		func() error { commitRandomPath(t, c, members[7], 7); return nil },
		func() error { return c.RemoveLeaf(11) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		checkTreeIndex(t, c)
	}
	checkTreeIndex(t, tr)
	if got := tr.RatchetTree(); len(got) != len(before) {
		t.Fatal("clone's changes reached the original tree")
	}
	// The newcomer's credential type is in use in the clone only.
	if slices.Contains(tr.CredentialTypes(), 0xf000) || !slices.Contains(c.CredentialTypes(), 0xf000) {
		t.Fatalf("credential types: original %v, clone %v", tr.CredentialTypes(), c.CredentialTypes())
	}
	// Changes to the original do not reach the clone either.
	commitRandomPath(t, tr, members[12], 12)
	checkTreeIndex(t, tr)
	checkTreeIndex(t, c)
	if _, ok := c.NodeWithEncryptionKey(tr.Leaf(12).EncryptionKey); ok {
		t.Fatal("original's new key visible in the clone")
	}
	// A leaf of the newcomer's credential type is one not every
	// member of the original supports.
	other := newMember(t, s, "other")
	other.leaf.Credential = newcomer.leaf.Credential
	if err := tr.CheckNewLeaf(treemath.LeafIndex(tr.LeafCount()), &other.leaf); !errors.Is(err, ErrUnsupportedCapability) {
		t.Fatalf("unsupported credential type: %v", err)
	}
}
