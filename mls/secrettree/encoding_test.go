package secrettree

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

func busyTree(t testing.TB) *Tree {
	tree := testTree(t, 8, Options{MaxForward: 50, MaxRetained: 4})
	for _, step := range []struct {
		leaf uint32
		kind RatchetType
		gen  uint32
	}{{5, Application, 9}, {5, Handshake, 0}, {2, Application, 3}, {2, Application, 1}} {
		if _, err := receive(tree, step.leaf, step.kind, step.gen); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

func TestStateRoundTrip(t *testing.T) {
	for _, tree := range []*Tree{testTree(t, 1, Options{}), testTree(t, 1024, Options{}), busyTree(t)} {
		enc, err := tree.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var dec Tree
		if err := dec.UnmarshalBinary(enc); err != nil {
			t.Fatal(err)
		}
		again, _ := dec.MarshalBinary()
		if !bytes.Equal(enc, again) {
			t.Fatal("state does not round-trip")
		}
		// The decoded tree behaves like the original.
		k1, err1 := receive(tree, 0, Application, 4)
		k2, err2 := receive(&dec, 0, Application, 4)
		if err1 != nil || err2 != nil || !bytes.Equal(k1.Key, k2.Key) {
			t.Fatalf("decoded tree diverges: %v %v", err1, err2)
		}
	}
}

func TestStateDecodeRejects(t *testing.T) {
	good, _ := busyTree(t).MarshalBinary()
	mutate := func(f func(b []byte) []byte) []byte { return f(clone(good)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, codec.ErrTruncated},
		{"version", mutate(func(b []byte) []byte { b[0] = 2; return b }), ErrInvalidState},
		{"suite", mutate(func(b []byte) []byte { b[2] = 9; return b }), nil},
		{"leaf count", mutate(func(b []byte) []byte { b[6] = 6; return b }), ErrInvalidState},
		{"no retention", mutate(func(b []byte) []byte { copy(b[11:15], []byte{0, 0, 0, 0}); return b }), ErrInvalidState},
		{"truncated", good[:len(good)-1], codec.ErrLengthTooLarge},
		{"trailing", append(clone(good), 0), codec.ErrTrailingData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tree Tree
			err := tree.UnmarshalBinary(tt.in)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestStateDecodeRejectsInconsistentCover(t *testing.T) {
	// A tree whose root is stored next to a derived leaf covers that leaf
	// twice; one with nothing stored covers nothing.
	tree := testTree(t, 4, Options{})
	if _, err := receive(tree, 0, Application, 0); err != nil {
		t.Fatal(err)
	}
	tree.nodes[rootOf(4)] = make([]byte, 32)
	enc, _ := tree.MarshalBinary()
	var dec Tree
	if err := dec.UnmarshalBinary(enc); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("double cover: %v", err)
	}
	tree.Zero()
	enc, _ = tree.MarshalBinary()
	if err := dec.UnmarshalBinary(enc); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("empty cover: %v", err)
	}
}

func FuzzStateDecode(f *testing.F) {
	for _, tree := range []*Tree{testTree(f, 1, Options{}), testTree(f, 4, Options{}), busyTree(f)} {
		enc, _ := tree.MarshalBinary()
		f.Add(enc)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var tree Tree
		if tree.UnmarshalBinary(data) != nil {
			return
		}
		again, _ := tree.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted state does not re-encode exactly")
		}
		// Every accepted state must be usable without panicking.
		for leaf := range min(tree.leafCount, 4) {
			_, _ = receive(&tree, leaf, Application, 3)
			_ = tree.Send(leaf, Handshake, func(Key) error { return nil })
		}
	})
}
