package tree

import (
	"bytes"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

func addVectorTreeSeeds(f *testing.F, wrap func([]byte) []byte) {
	var cases []treeValidationCase
	if err := vectors.LoadPath("tree-validation.json", &cases); err != nil {
		f.Fatal(err)
	}
	for i := 0; i < len(cases); i += 7 {
		if cases[i].CipherSuite == suite.X25519AES128GCMSHA256Ed25519 {
			f.Add(wrap(cases[i].Tree))
		}
	}
}

// FuzzFromRatchetTree feeds arbitrary ratchet_tree extensions through
// decoding, structural checks, resolutions, hashing and full validation:
// none of it may panic, and an accepted tree must re-encode exactly.
func FuzzFromRatchetTree(f *testing.F) {
	addVectorTreeSeeds(f, func(b []byte) []byte { return b })
	s, err := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rt message.RatchetTree
		if codec.Unmarshal(data, &rt, "ratchet_tree") != nil {
			return
		}
		tr, err := FromRatchetTree(s, rt)
		if err != nil {
			return
		}
		if got := codec.Marshal(tr.RatchetTree()); !bytes.Equal(got, data) {
			t.Fatalf("re-encoding differs")
		}
		for x := range tr.Width() {
			tr.Resolution(treemath.NodeIndex(x))
		}
		for l := range uint32(tr.LeafCount()) {
			tr.FilteredDirectPath(treemath.LeafIndex(l))
		}
		for x := range tr.Width() {
			if k := tr.EncryptionKey(treemath.NodeIndex(x)); k != nil {
				if _, ok := tr.NodeWithEncryptionKey(k); !ok {
					t.Fatalf("node %d's key is not indexed", x)
				}
			}
		}
		tr.RootHash()
		// A clone's change must not reach the tree, nor break either's
		// index.
		c := tr.Clone()
		tr.Members(func(l treemath.LeafIndex, leaf *message.LeafNode) bool {
			_ = c.CheckNewLeaf(l, leaf)
			_ = c.RemoveLeaf(l)
			return false
		})
		c.RootHash()
		if got := codec.Marshal(tr.RatchetTree()); !bytes.Equal(got, data) {
			t.Fatalf("a clone's change reached the tree")
		}
		_ = tr.Validate(ValidateOptions{GroupID: []byte("g")})
	})
}

// FuzzUnmarshalBinary checks that stored-tree decoding never panics and
// that what it accepts round-trips.
func FuzzUnmarshalBinary(f *testing.F) {
	addVectorTreeSeeds(f, func(b []byte) []byte {
		var rt message.RatchetTree
		if codec.Unmarshal(b, &rt, "ratchet_tree") != nil {
			return b
		}
		s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
		tr, err := FromRatchetTree(s, rt)
		if err != nil {
			return b
		}
		data, _ := tr.MarshalBinary()
		return data
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		var tr Tree
		if tr.UnmarshalBinary(data) != nil {
			return
		}
		again, err := tr.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}
