package treekem

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// sameKeys reports whether a and b hold the same keys for the same nodes.
func sameKeys(a, b *PrivateState) bool {
	return a.leaf == b.leaf && slices.EqualFunc(a.keys, b.keys, func(x, y nodeKey) bool {
		return x.node == y.node && x.priv.Equal(y.priv)
	})
}

// TestPathKeysJoin: every member's state after a commit, taken from shared
// path keys, is the one WithJoinerPathSecret derives for it alone, in
// whatever order the members come and whether the keys are the
// committer's own or found from the secrets; a wrong secret is refused
// whether its node's key is known yet or not.
func TestPathKeysJoin(t *testing.T) {
	const n, committer = 13, 5
	g := newGroup(t, n)
	fdp := g.tree.FilteredDirectPath(committer)
	committed := g.tree.Clone()
	gen, err := g.states[committer].Generate(committed, *g.tree.Leaf(committer), g.sigPriv[committer], testContext(1))
	if err != nil {
		t.Fatal(err)
	}
	var order []int
	for j := range n {
		if j != committer {
			order = append(order, j)
		}
	}
	reversed := slices.Clone(order)
	slices.Reverse(reversed)
	for _, tc := range []struct {
		name  string
		keys  func() *PathKeys
		order []int
	}{
		{"committer's", func() *PathKeys { return gen.PathKeys(committed) }, order},
		{"from secrets, left first", func() *PathKeys { return NewPathKeys(g.s, committed, committer, fdp) }, order},
		{"from secrets, right first", func() *PathKeys { return NewPathKeys(g.s, committed, committer, fdp) }, reversed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pk := tc.keys()
			defer pk.Zero()
			for _, j := range tc.order {
				secret := gen.PathSecretFor(treemath.LeafIndex(j))
				want, err := g.states[j].WithJoinerPathSecret(committed, committer, secret)
				if err != nil {
					t.Fatal(err)
				}
				got, err := pk.Join(g.states[j], secret)
				if err != nil {
					t.Fatalf("member %d: %v", j, err)
				}
				if !sameKeys(got, want) {
					t.Fatalf("member %d: shared keys differ from its own derivation", j)
				}
			}
			if top := pk.Top(); !bytes.Equal(g.s.DeriveSecret(top, "path"), gen.CommitSecret) {
				t.Fatal("the last node's secret does not derive the commit secret")
			}
		})
	}

	wrong := make([]byte, g.s.HashSize())
	for _, j := range []int{4, 12} { // under the lowest ancestor and the root
		pk := NewPathKeys(g.s, committed, committer, fdp)
		if _, err := pk.Join(g.states[j], wrong); !errors.Is(err, ErrPublicKeyMismatch) {
			t.Fatalf("member %d, a wrong secret first: %v, want a mismatch", j, err)
		}
		if _, err := pk.Join(g.states[j], gen.PathSecretFor(treemath.LeafIndex(j))); err != nil {
			t.Fatalf("member %d after a refused secret: %v", j, err)
		}
		if _, err := pk.Join(g.states[j], wrong); !errors.Is(err, ErrPublicKeyMismatch) {
			t.Fatalf("member %d, a wrong secret for a known node: %v, want a mismatch", j, err)
		}
		pk.Zero()
	}
	pk := gen.PathKeys(committed)
	defer pk.Zero()
	if _, err := pk.Join(gen.Private, gen.CommitSecret); !errors.Is(err, ErrNoDecryptionKey) {
		t.Fatalf("the committer's own leaf: %v, want ErrNoDecryptionKey", err)
	}
}

// TestKeyCheck: checking many states with one KeyCheck accepts what Check
// accepts and refuses a stale key at a node whose current key another
// member's state already showed.
func TestKeyCheck(t *testing.T) {
	g := newGroup(t, 8)
	kc := NewKeyCheck(g.tree)
	for j, st := range g.states {
		if err := kc.Check(st); err != nil {
			t.Fatalf("member %d: %v", j, err)
		}
	}
	// Member 0 commits: its new keys are checked first, then member 1's
	// stale key for their parent must still be refused.
	committed := g.tree.Clone()
	gen, err := g.states[0].Generate(committed, *committed.Leaf(0), g.sigPriv[0], testContext(1))
	if err != nil {
		t.Fatal(err)
	}
	kc = NewKeyCheck(committed)
	if err := kc.Check(gen.Private); err != nil {
		t.Fatalf("the committer: %v", err)
	}
	if err := kc.Check(g.states[1]); !errors.Is(err, ErrPublicKeyMismatch) {
		t.Fatalf("a stale key at a checked node: %v, want a mismatch", err)
	}
	after, err := g.states[1].WithJoinerPathSecret(committed, 0, gen.PathSecretFor(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.Check(after.Prune(committed)); err != nil {
		t.Fatalf("member 1 after the commit: %v", err)
	}
	if err := kc.Check(g.states[5]); err == nil {
		t.Fatal("member 5's stale root key was accepted")
	}
}
