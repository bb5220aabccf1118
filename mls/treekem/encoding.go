package treekem

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// encodingVersion is the version of the storage format:
//
//	struct { uint32 node; opaque private_key<V>; } NodeKey;
//	struct {
//	    uint8 version = 1;
//	    CipherSuite cipher_suite;
//	    uint32 leaf;
//	    NodeKey keys<V>;           // ascending by node
//	} PrivateTreeState;
const encodingVersion = 1

// maxKeys bounds a decoded state: a leaf and at most 31 ancestors.
const maxKeys = 32

// MarshalBinary encodes the private keys for storage. The result is secret
// and must be stored sealed.
func (p *PrivateState) MarshalBinary() ([]byte, error) {
	w := codec.NewWriter(16 + len(p.keys)*72)
	stored.WriteHeader(w, encodingVersion, p.suite.ID())
	w.Uint32(uint32(p.leaf))
	w.Vector(func(w *codec.Writer) {
		for _, k := range p.keys {
			w.Uint32(uint32(k.node))
			w.Opaque(k.priv.Bytes())
		}
	})
	return w.Bytes(), nil
}

// UnmarshalBinary replaces p with a decoded state. It checks that the nodes
// are the leaf and its ancestors, in increasing order, each once, and that
// every key is a valid private key of the suite.
func (p *PrivateState) UnmarshalBinary(data []byte) error {
	r := codec.NewReader(data)
	s := stored.ReadHeader(r, "treekem", encodingVersion, ErrInvalidState)
	leaf := treemath.LeafIndex(r.Uint32("treekem.leaf"))
	var keys []nodeKey
	r.Each("treekem.keys", func(r *codec.Reader) {
		if len(keys) == maxKeys {
			r.Fail("treekem.keys", fmt.Errorf("%w: more than %d keys", ErrInvalidState, maxKeys))
			return
		}
		node := treemath.NodeIndex(r.Uint32("treekem.keys.node"))
		enc := r.Opaque("treekem.keys.private_key")
		if r.Err() != nil {
			return
		}
		priv, err := s.NewHPKEPrivateKey(enc)
		if err != nil {
			r.Fail("treekem.keys.private_key", fmt.Errorf("%w: key of node %d: %w", ErrInvalidState, node, err))
			return
		}
		keys = append(keys, nodeKey{node, priv})
	})
	if err := r.Finish("treekem"); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if uint64(leaf) >= uint64(treemath.MaxLeaves) {
		return fmt.Errorf("%w: leaf %d", ErrInvalidState, leaf)
	}
	hasLeaf := false
	for i, k := range keys {
		hasLeaf = hasLeaf || k.node == leaf.Node()
		if i > 0 && k.node <= keys[i-1].node {
			return fmt.Errorf("%w: nodes out of order", ErrInvalidState)
		}
		if !treemath.InSubtree(leaf.Node(), k.node) {
			return fmt.Errorf("%w: node %d is not above leaf %d", ErrInvalidState, k.node, leaf)
		}
	}
	if !hasLeaf {
		return fmt.Errorf("%w: no key for the leaf", ErrInvalidState)
	}
	*p = PrivateState{suite: s, leaf: leaf, keys: keys}
	return nil
}
