package treekem

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

const encodingVersion = 1

// maxKeys bounds a decoded state: a leaf and at most 31 ancestors.
const maxKeys = 32

// MarshalBinary encodes the private keys for storage: a format version,
// the suite, the leaf index and the (node, private key) pairs. The result
// is secret and must be stored sealed.
func (p *PrivateState) MarshalBinary() ([]byte, error) {
	w := codec.NewWriter(16 + len(p.keys)*72)
	w.Uint8(encodingVersion)
	w.Uint16(uint16(p.suite.ID()))
	w.Uint32(uint32(p.leaf))
	w.Vector(func(w *codec.Writer) {
		for _, k := range p.keys {
			w.Uint32(uint32(k.node))
			w.Opaque(k.priv)
		}
	})
	return w.Bytes(), nil
}

// UnmarshalBinary replaces p with a decoded state. It checks that the nodes
// are the leaf and its ancestors, in increasing order, each once, and that
// every key is a valid private key of the suite.
func (p *PrivateState) UnmarshalBinary(data []byte) error {
	r := codec.NewReader(data)
	version := r.Uint8("treekem.version")
	id := suite.ID(r.Uint16("treekem.cipher_suite"))
	leaf := treemath.LeafIndex(r.Uint32("treekem.leaf"))
	var keys []nodeKey
	r.Each("treekem.keys", func(r *codec.Reader) {
		if len(keys) == maxKeys {
			r.Fail("treekem.keys", fmt.Errorf("more than %d keys", maxKeys))
			return
		}
		node := treemath.NodeIndex(r.Uint32("treekem.keys.node"))
		priv := r.Opaque("treekem.keys.private_key")
		keys = append(keys, nodeKey{node, priv})
	})
	if err := r.Finish("treekem"); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidState, err)
	}
	if version != encodingVersion {
		return fmt.Errorf("%w: format version %d", ErrInvalidState, version)
	}
	s, err := suite.Lookup(id)
	if err != nil {
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
		if _, err := s.HPKEPublicKey(k.priv); err != nil {
			return fmt.Errorf("%w: key of node %d: %w", ErrInvalidState, k.node, err)
		}
	}
	if !hasLeaf {
		return fmt.Errorf("%w: no key for the leaf", ErrInvalidState)
	}
	*p = PrivateState{suite: s, leaf: leaf, keys: keys}
	return nil
}
