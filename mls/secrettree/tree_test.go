package secrettree

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func testTree(t testing.TB, leaves uint32, opts Options) *Tree {
	t.Helper()
	s, err := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := New(s, bytes.Repeat([]byte{7}, s.HashSize()), leaves, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// receive returns a copy of the key for generation gen, consuming it.
func receive(tree *Tree, leaf uint32, kind RatchetType, gen uint32) (Key, error) {
	var got Key
	err := tree.Receive(leaf, kind, gen, func(k Key) error {
		got = Key{Generation: k.Generation, Key: clone(k.Key), Nonce: clone(k.Nonce)}
		return nil
	})
	return got, err
}

func TestNewRejectsBadLeafCount(t *testing.T) {
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	for _, n := range []uint32{0, 3, 10000, 1<<31 + 1} {
		if _, err := New(s, make([]byte, 32), n, Options{}); !errors.Is(err, ErrInvalidLeafCount) {
			t.Errorf("New(%d leaves) = %v, want ErrInvalidLeafCount", n, err)
		}
	}
}

func TestLazyDerivation(t *testing.T) {
	tree := testTree(t, 16384, Options{})
	if len(tree.nodes) != 1 {
		t.Fatalf("fresh tree holds %d node secrets, want 1", len(tree.nodes))
	}
	root := tree.nodes[rootOf(16384)]
	if _, err := receive(tree, 9999, Application, 0); err != nil {
		t.Fatal(err)
	}
	// The path to leaf 9999 has 14 parents; each left one sibling behind.
	if len(tree.nodes) != 14 || len(tree.leaves) != 1 {
		t.Fatalf("after one leaf: %d node secrets, %d leaves; want 14, 1", len(tree.nodes), len(tree.leaves))
	}
	if _, ok := tree.nodes[rootOf(16384)]; ok || !bytes.Equal(root, make([]byte, len(root))) {
		t.Fatal("root secret was not deleted and zeroed after use")
	}
	if !tree.coversEachLeafOnce() {
		t.Fatal("state does not cover each leaf once")
	}
	// A neighbour reuses the stored sibling and consumes it.
	if _, err := receive(tree, 9998, Handshake, 0); err != nil {
		t.Fatal(err)
	}
	if len(tree.nodes) != 13 || !tree.coversEachLeafOnce() {
		t.Fatalf("after neighbour: %d node secrets", len(tree.nodes))
	}
}

func TestOutOfOrderAndReplay(t *testing.T) {
	tree := testTree(t, 4, Options{MaxForward: 10, MaxRetained: 3})
	ref := testTree(t, 4, Options{})
	want := make([]Key, 12)
	for g := range want {
		if err := ref.Send(2, Application, func(k Key) error {
			want[g] = Key{Generation: k.Generation, Key: clone(k.Key), Nonce: clone(k.Nonce)}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(gen uint32, wantErr error) {
		t.Helper()
		got, err := receive(tree, 2, Application, gen)
		if !errors.Is(err, wantErr) {
			t.Fatalf("generation %d: err %v, want %v", gen, err, wantErr)
		}
		if err == nil && (!bytes.Equal(got.Key, want[gen].Key) || !bytes.Equal(got.Nonce, want[gen].Nonce)) {
			t.Fatalf("generation %d: wrong key", gen)
		}
	}
	check(11, ErrGenerationTooFar) // 11 ahead of 0, limit 10
	check(5, nil)                  // retains 2, 3, 4 (0 and 1 fall outside MaxRetained)
	check(5, ErrGenerationConsumed)
	check(0, ErrGenerationConsumed)
	check(3, nil)
	check(3, ErrGenerationConsumed)
	check(8, nil) // retains 6, 7 next to 2 and 4; keeps the newest 3: 4, 6, 7
	check(2, ErrGenerationConsumed)
	check(4, nil)
	check(7, nil)
	check(6, nil)
	check(9, nil)
	// Handshake ratchet of the same leaf is independent.
	if _, err := receive(tree, 2, Handshake, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := receive(tree, 4, Handshake, 0); !errors.Is(err, ErrLeafOutOfRange) {
		t.Fatalf("leaf 4 of 4: %v", err)
	}
}

func TestReceiveFailureLeavesStateIntact(t *testing.T) {
	tree := testTree(t, 2, Options{})
	if _, err := receive(tree, 1, Application, 0); err != nil {
		t.Fatal(err)
	}
	before, _ := tree.MarshalBinary()
	before = clone(before)
	boom := errors.New("aead failed")
	for _, gen := range []uint32{1, 50} {
		if err := tree.Receive(1, Application, gen, func(Key) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
	}
	after, _ := tree.MarshalBinary()
	if !bytes.Equal(before, after) {
		t.Fatal("failed use changed the tree")
	}
	if _, err := receive(tree, 1, Application, 50); err != nil {
		t.Fatal(err)
	}
	// A retained key survives a failed use too.
	if err := tree.Receive(1, Application, 10, func(Key) error { return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if _, err := receive(tree, 1, Application, 10); err != nil {
		t.Fatal(err)
	}
}

func TestSendNeverRepeats(t *testing.T) {
	tree := testTree(t, 2, Options{})
	seen := map[uint32]bool{}
	for range 5 {
		_ = tree.Send(0, Handshake, func(k Key) error {
			if seen[k.Generation] {
				t.Fatalf("generation %d handed out twice", k.Generation)
			}
			seen[k.Generation] = true
			return errors.New("send failed") // still consumed
		})
	}
	if len(seen) != 5 {
		t.Fatalf("got %d generations", len(seen))
	}
	tree.leaves[0].ratchets[Handshake].next = maxGeneration + 1
	if err := tree.Send(0, Handshake, func(Key) error { return nil }); !errors.Is(err, ErrRatchetExhausted) {
		t.Fatalf("got %v", err)
	}
}

func TestConsumedKeysAreZeroed(t *testing.T) {
	tree := testTree(t, 2, Options{})
	var kept Key
	if err := tree.Receive(0, Application, 3, func(k Key) error { kept = k; return nil }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kept.Key, make([]byte, len(kept.Key))) || !bytes.Equal(kept.Nonce, make([]byte, len(kept.Nonce))) {
		t.Fatal("used key was not zeroed")
	}
	retained := tree.leaves[0].ratchets[Application].skipped[0]
	if _, err := receive(tree, 0, Application, retained.Generation); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(retained.Key, make([]byte, len(retained.Key))) {
		t.Fatal("retained key was not zeroed after use")
	}
}

func TestCloneIsIndependent(t *testing.T) {
	a := testTree(t, 8, Options{})
	if _, err := receive(a, 3, Application, 2); err != nil {
		t.Fatal(err)
	}
	b := a.Clone()
	ka, err := receive(a, 3, Application, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := receive(a, 3, Application, 1); !errors.Is(err, ErrGenerationConsumed) {
		t.Fatal("replay in a accepted")
	}
	kb, err := receive(b, 3, Application, 1)
	if err != nil {
		t.Fatalf("branch b lost generation 1: %v", err)
	}
	if !bytes.Equal(ka.Key, kb.Key) {
		t.Fatal("branches disagree")
	}
	a.Zero()
	if _, err := receive(b, 5, Handshake, 0); err != nil {
		t.Fatalf("zeroing a broke b: %v", err)
	}
}

// TestSkipped: Skipped reports the generations the last successful
// Receive stepped over; a failed Receive leaves it as it was.
func TestSkipped(t *testing.T) {
	tree := testTree(t, 4, Options{MaxForward: 10, MaxRetained: 5})
	for _, c := range []struct {
		gen     uint32
		ok      bool
		skipped int
	}{
		{0, true, 0},
		{3, true, 2}, // 1 and 2 not received
		{1, true, 0}, // a late one skips nothing
		{4, true, 0},
		{4, false, 0}, // replay: refused, unchanged
		{9, true, 4},
		{21, false, 4}, // 11 ahead of 10, limit 10: refused, unchanged
	} {
		_, err := receive(tree, 1, Application, c.gen)
		if (err == nil) != c.ok {
			t.Fatalf("generation %d: %v", c.gen, err)
		}
		if got := tree.Skipped(); got != c.skipped {
			t.Errorf("after generation %d: Skipped() = %d, want %d", c.gen, got, c.skipped)
		}
	}
}
