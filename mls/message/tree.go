package message

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
)

// ParentNode is an interior node of the ratchet tree (RFC 9420 §7.1).
type ParentNode struct {
	EncryptionKey  []byte
	ParentHash     []byte
	UnmergedLeaves []uint32
}

// MarshalMLS implements codec.Marshaler.
func (p *ParentNode) MarshalMLS(w *codec.Writer) {
	w.Opaque(p.EncryptionKey)
	w.Opaque(p.ParentHash)
	writeUint32s(w, p.UnmergedLeaves)
}

// UnmarshalMLS implements codec.Unmarshaler.
func (p *ParentNode) UnmarshalMLS(r *codec.Reader) {
	p.EncryptionKey = r.Opaque("parent_node.encryption_key")
	p.ParentHash = r.Opaque("parent_node.parent_hash")
	p.UnmergedLeaves = readUint32s(r, "parent_node.unmerged_leaves")
}

// NodeType says whether a tree node is a leaf or a parent (RFC 9420 §7.8).
type NodeType uint8

// The node types of RFC 9420 §7.8.
const (
	NodeTypeLeaf   NodeType = 1
	NodeTypeParent NodeType = 2
)

// Node is a non-blank node of the ratchet tree. Type selects Leaf or
// Parent.
type Node struct {
	Type   NodeType
	Leaf   *LeafNode
	Parent *ParentNode
}

// MarshalMLS implements codec.Marshaler.
func (n *Node) MarshalMLS(w *codec.Writer) {
	w.Uint8(uint8(n.Type))
	switch n.Type {
	case NodeTypeLeaf:
		if n.Leaf == nil {
			panic("message: leaf Node without a LeafNode")
		}
		n.Leaf.MarshalMLS(w)
	case NodeTypeParent:
		if n.Parent == nil {
			panic("message: parent Node without a ParentNode")
		}
		n.Parent.MarshalMLS(w)
	}
}

// UnmarshalMLS implements codec.Unmarshaler.
func (n *Node) UnmarshalMLS(r *codec.Reader) {
	*n = Node{Type: NodeType(r.Uint8("node.node_type"))}
	switch n.Type {
	case NodeTypeLeaf:
		n.Leaf = new(LeafNode)
		n.Leaf.UnmarshalMLS(r)
	case NodeTypeParent:
		n.Parent = new(ParentNode)
		n.Parent.UnmarshalMLS(r)
	default:
		r.Fail("node.node_type", fmt.Errorf("%w %d", ErrUnknownNodeType, n.Type))
	}
}

// RatchetTree is the array form of a ratchet tree as carried in the
// ratchet_tree extension (RFC 9420 §12.4.3.3): optional<Node>
// ratchet_tree<V>, in node-index order, nil for a blank node. Decoding
// checks only the syntax; whether the nodes form a valid tree (leaves at
// even indices, no trailing blank, and so on) is for the tree package.
type RatchetTree []*Node

// MarshalMLS implements codec.Marshaler.
func (t RatchetTree) MarshalMLS(w *codec.Writer) {
	w.Vector(func(w *codec.Writer) {
		for _, n := range t {
			w.Optional(n != nil)
			if n != nil {
				n.MarshalMLS(w)
			}
		}
	})
}

// UnmarshalMLS implements codec.Unmarshaler.
func (t *RatchetTree) UnmarshalMLS(r *codec.Reader) {
	nodes := RatchetTree{}
	r.Each("ratchet_tree", func(r *codec.Reader) {
		var n *Node
		if r.Optional("ratchet_tree.node") {
			n = new(Node)
			n.UnmarshalMLS(r)
		}
		nodes = append(nodes, n)
	})
	*t = nodes
}
