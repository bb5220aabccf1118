package pprf

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// reference evaluates DeriveFSSecret the slow, obvious way: from the root
// down to the leaf, with no frontier and no puncturing.
func reference(s *suite.Suite, key, input []byte) []byte {
	return referenceWalk(s, key, 8*len(input), func(d int) bool {
		return input[d/8]>>(7-d%8)&1 == 1
	})
}

// referenceIndex is reference for leaf i of a tree of depth bits. It reads
// the path straight off the integer, most significant bit first, rather
// than through the byte form that EvaluateIndex builds.
func referenceIndex(s *suite.Suite, key []byte, i uint64, bits int) []byte {
	return referenceWalk(s, key, bits, func(d int) bool {
		return i>>(bits-1-d)&1 == 1 // 0 for shifts of 64 or more
	})
}

// referenceWalk descends depth levels from key, going right at depth d
// when right(d), and derives the output of the leaf it reaches.
func referenceWalk(s *suite.Suite, key []byte, depth int, right func(d int) bool) []byte {
	secret := bytes.Clone(key)
	for d := range depth {
		side := "left"
		if right(d) {
			side = "right"
		}
		secret = s.ExpandWithLabel(secret, "tree", []byte(side), s.HashSize())
	}
	return s.DeriveSecret(secret, "pprf")
}

func suite1(t testing.TB) *suite.Suite {
	s, err := suite.Lookup(1)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func randomBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// inputs returns inputs that stress the tree's edges: the first and last
// leaf, neighbours that differ only in their last bit, neighbours that
// differ in their first bit, and random ones.
func inputs(nh int, r *rand.Rand) [][]byte {
	zero := make([]byte, nh)
	ones := bytes.Repeat([]byte{0xff}, nh)
	one := make([]byte, nh)
	one[nh-1] = 1
	high := make([]byte, nh)
	high[0] = 0x80
	out := [][]byte{zero, ones, one, high}
	for range 6 {
		x := randomBytes(r, nh)
		y := bytes.Clone(x)
		y[nh-1] ^= 1
		out = append(out, x, y)
	}
	return out
}

func TestEvaluateMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, s := range suite.All() {
		t.Run(s.String(), func(t *testing.T) {
			nh := s.HashSize()
			key := randomBytes(r, nh)
			p, err := New(s, key)
			if err != nil {
				t.Fatal(err)
			}
			for i, in := range inputs(nh, r) {
				got, err := p.Evaluate(in)
				if err != nil {
					t.Fatalf("input %d: %v", i, err)
				}
				if want := reference(s, key, in); !bytes.Equal(got, want) {
					t.Fatalf("input %d: got %x, want %x", i, got, want)
				}
			}
		})
	}
}

// TestKnownAnswer pins outputs so that a change to the construction cannot
// pass unnoticed. There are no published DMLS vectors; these values come
// from this implementation and agree with reference above.
func TestKnownAnswer(t *testing.T) {
	s := suite1(t)
	key := seq(32, 0)
	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"first leaf", make([]byte, 32), "4a88da8b83793509f437e90e77a21ce8ed88d2c0c199c7741a3c5ece19106cc1"},
		{"last leaf", bytes.Repeat([]byte{0xff}, 32), "c3deb4f865af8814d0a76e69f53ceff67fb4aab5ceb948128626747b29609aa9"},
		{"counting", seq(32, 0x40), "83ab91cc9b1941e7aed0599d6e0705e88076181f2857102d239f4a656e2f800d"},
	}
	p, err := New(s, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		got, err := p.Evaluate(tt.input)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if want := reference(s, key, tt.input); !bytes.Equal(got, want) {
			t.Errorf("%s: disagrees with reference", tt.name)
		}
		if hex.EncodeToString(got) != tt.want {
			t.Errorf("%s: got %x, want %s", tt.name, got, tt.want)
		}
	}
}

func TestPuncture(t *testing.T) {
	s := suite1(t)
	key := seq(32, 7)
	p, _ := New(s, key)
	x := seq(32, 0x10)
	if _, err := p.Evaluate(x); err != nil {
		t.Fatal(err)
	}
	if n := p.Len(); n != 8*32 {
		t.Errorf("after one evaluation from the root: %d secrets, want %d", n, 8*32)
	}
	if _, err := p.Evaluate(x); !errors.Is(err, ErrPunctured) {
		t.Fatalf("second evaluation: %v, want ErrPunctured", err)
	}
	// The neighbour leaf sits right next to the punctured one and must
	// still be available, with its original value.
	y := bytes.Clone(x)
	y[31] ^= 1
	got, err := p.Evaluate(y)
	if err != nil {
		t.Fatalf("neighbour: %v", err)
	}
	if !bytes.Equal(got, reference(s, key, y)) {
		t.Fatal("neighbour output changed by puncturing")
	}
	if _, err := p.Evaluate(y); !errors.Is(err, ErrPunctured) {
		t.Fatalf("neighbour again: %v", err)
	}
	if _, err := p.Evaluate(x); !errors.Is(err, ErrPunctured) {
		t.Fatalf("first input after neighbour: %v", err)
	}
	// The two leaves were siblings, so their parent's subtree is gone and
	// nothing was added by the second evaluation.
	if n := p.Len(); n != 8*32-1 {
		t.Errorf("after two sibling evaluations: %d secrets, want %d", n, 8*32-1)
	}
	// A failed evaluation leaves the state unchanged.
	before, _ := p.MarshalBinary()
	_, _ = p.Evaluate(x)
	after, _ := p.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Error("refused evaluation changed the state")
	}
}

func TestEvaluationZeroesConsumedSecrets(t *testing.T) {
	s := suite1(t)
	p, _ := New(s, seq(32, 1))
	root := p.nodes[0].secret
	if _, err := p.Evaluate(seq(32, 2)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, make([]byte, 32)) {
		t.Error("the consumed root secret was not zeroed")
	}
	for _, n := range p.nodes {
		if bytes.Equal(n.secret, make([]byte, 32)) {
			t.Fatal("a kept copath secret is zero")
		}
	}
	kept := p.nodes[0].secret
	p.Wipe()
	if !bytes.Equal(kept, make([]byte, 32)) || p.Len() != 0 {
		t.Error("Wipe left secrets behind")
	}
	if _, err := p.Evaluate(seq(32, 3)); !errors.Is(err, ErrPunctured) {
		t.Errorf("evaluate after Wipe: %v", err)
	}
}

func TestCloneIsIndependent(t *testing.T) {
	s := suite1(t)
	key := seq(32, 9)
	p, _ := New(s, key)
	c := p.Clone()
	x := seq(32, 0x30)
	if _, err := p.Evaluate(x); err != nil {
		t.Fatal(err)
	}
	// The clone was taken before the evaluation, so it can still evaluate
	// x: this is how a caller rolls back a failed transaction.
	got, err := c.Evaluate(x)
	if err != nil || !bytes.Equal(got, reference(s, key, x)) {
		t.Fatalf("clone: %x, %v", got, err)
	}
	c.Wipe()
	if _, err := p.Evaluate(seq(32, 0x31)); err != nil {
		t.Fatalf("original after wiping the clone: %v", err)
	}
}

func TestLengthChecks(t *testing.T) {
	s := suite1(t)
	if _, err := New(s, make([]byte, 31)); !errors.Is(err, ErrInputLength) {
		t.Errorf("short key: %v", err)
	}
	p, _ := New(s, make([]byte, 32))
	for _, n := range []int{0, 31, 33, 64} {
		if _, err := p.Evaluate(make([]byte, n)); !errors.Is(err, ErrInputLength) {
			t.Errorf("input of %d bytes: %v", n, err)
		}
		if _, err := p.DeriveChild("child_init", make([]byte, n), nil); !errors.Is(err, ErrInputLength) {
			t.Errorf("input secret of %d bytes: %v", n, err)
		}
	}
	if p.Len() != 1 {
		t.Error("rejected inputs changed the state")
	}
}

func TestChildInitSecret(t *testing.T) {
	s := suite1(t)
	epochSecret := seq(32, 0x50)
	parent := ParentInitSecret(s, epochSecret)
	if !bytes.Equal(parent, s.DeriveSecret(epochSecret, "parent_init")) {
		t.Fatal("parent_init_secret")
	}
	if _, err := CommitConfirmation(s, nil); !errors.Is(err, ErrNoUpdatePath) {
		t.Fatalf("pathless commit: %v", err)
	}
	groupContext := []byte("encoded group context")
	confA, _ := CommitConfirmation(s, seq(32, 0xa0))
	confB, _ := CommitConfirmation(s, seq(32, 0xb0))
	if !bytes.Equal(confA, s.DeriveSecret(seq(32, 0xa0), "conf")) {
		t.Fatal("commit_confirmation")
	}

	p, _ := New(s, parent)
	a, err := p.ChildInitSecret(confA, groupContext)
	if err != nil {
		t.Fatal(err)
	}
	want := reference(s, parent, s.ExpandWithLabel(confA, "child_init", groupContext, 32))
	if !bytes.Equal(a, want) {
		t.Fatal("ChildInitSecret differs from DeriveFSSecret(prf, ExpandWithLabel(...))")
	}
	// A competing commit on the same epoch gets its own init secret...
	b, err := p.ChildInitSecret(confB, groupContext)
	if err != nil || bytes.Equal(a, b) {
		t.Fatalf("second child: %x, %v", b, err)
	}
	// ...but neither child can be derived twice.
	if _, err := p.ChildInitSecret(confA, groupContext); !errors.Is(err, ErrPunctured) {
		t.Fatalf("same child again: %v", err)
	}
}

func TestKeptBytes(t *testing.T) {
	s := suite1(t)
	epochSecret := seq(32, 0x60)
	kept, err := KeepForChildren(s, epochSecret)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckKept(s, kept); err != nil {
		t.Fatal(err)
	}
	s2, _ := suite.Lookup(2)
	if err := CheckKept(s2, kept); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("wrong suite: %v", err)
	}
	if err := CheckKept(s, kept[:len(kept)-1]); err == nil {
		t.Fatal("truncated kept bytes accepted")
	}
	conf, _ := CommitConfirmation(s, seq(32, 0x70))
	gc := []byte("group context")
	original := bytes.Clone(kept)
	init1, after, err := NextChildInit(s, kept, conf, gc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kept, original) {
		t.Fatal("NextChildInit changed the kept bytes it was given")
	}
	p, _ := New(s, ParentInitSecret(s, epochSecret))
	want, _ := p.ChildInitSecret(conf, gc)
	if !bytes.Equal(init1, want) {
		t.Fatal("init secret differs from ChildInitSecret")
	}
	if _, _, err := NextChildInit(s, after, conf, gc); !errors.Is(err, ErrPunctured) {
		t.Fatalf("same child from the kept bytes after: %v", err)
	}
	// The old bytes can still derive it: that is the rollback path.
	if again, _, err := NextChildInit(s, kept, conf, gc); err != nil || !bytes.Equal(again, init1) {
		t.Fatalf("rollback: %v", err)
	}
	if _, _, err := NextChildInit(s2, kept, conf, gc); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("wrong suite: %v", err)
	}
	// An indexed PPRF of the right suite decodes, but is no epoch's state.
	q, _ := NewIndexed(s, ParentInitSecret(s, epochSecret), 32)
	indexed, _ := q.MarshalBinary()
	if err := CheckKept(s, indexed); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("CheckKept of an indexed PPRF: %v", err)
	}
	if _, _, err := NextChildInit(s, indexed, conf, gc); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("NextChildInit of an indexed PPRF: %v", err)
	}
}
