package pprf

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
)

// The first byte of an encoded PPRF is its format version. A new layout
// gets a new number, and the old ones keep decoding, since stored states
// outlive binaries. MarshalBinary writes version 3, so every state has
// exactly one encoding that is written; versions 1 and 2 were written
// before it and still decode.
//
// Version 1 encodes a PPRF made by New (leaves at depth 8*KDF.Nh), in the
// TLS presentation language:
//
//	struct {
//	    uint16 depth;             // 0 (the root) .. 8*KDF.Nh (a leaf)
//	    opaque prefix<V>;         // ceil(depth/8) bytes; unused bits zero
//	    opaque secret<V>;         // KDF.Nh bytes
//	} FrontierNode;
//	struct {
//	    uint8 version = 1;
//	    uint16 cipher_suite;
//	    FrontierNode nodes<V>;    // ascending by first leaf, disjoint
//	} PPRFState;
//
// Version 2 encodes a PPRF of any other leaf depth (NewIndexed), which
// version 1 has no room for:
//
//	struct {
//	    uint8 version = 2;
//	    uint16 cipher_suite;
//	    uint16 bits;              // leaf depth, 1..32
//	    FrontierNode nodes<V>;    // as in version 1, but depth <= bits
//	} PPRFStateV2;
//
// Version 3 encodes any PPRF, and states the frontier's shape instead of
// each node's position. In versions 1 and 2 a node's depth and prefix cost
// about half as much as its secret (a DMLS epoch whose PRF was punctured
// once holds 255 nodes: 13 KiB, of which 8 KiB secrets); here the
// positions of all of them cost about 128 bytes:
//
//	struct {
//	    uint8 version = 3;
//	    uint16 cipher_suite;
//	    uint16 bits;              // leaf depth: 8*KDF.Nh, or 1..32
//	    opaque shape<V>;          // the walk below, 4 nodes a byte
//	    opaque secrets<V>;        // KDF.Nh bytes a frontier node, in leaf order
//	} PPRFStateV3;
//
// The shape is a walk of the tree in preorder from the root, one 2-bit
// code for each node it visits, most significant bits first: 00, no
// frontier node in the node's subtree; 01, the node is a frontier node
// (its secret is the next in secrets); 10, the walk goes on into the
// node's left subtree, then its right. Code 11 is never used, a leaf
// (depth bits) is never walked into, a node whose subtrees are both empty
// is coded 00, and the bits after the last code are zero: so a state has
// one encoding, and the decoder takes no other.
const (
	stateV1 = 1
	stateV2 = 2
	stateV3 = 3
)

// Codes of the version 3 shape.
const (
	shapeEmpty    = 0b00
	shapeFrontier = 0b01
	shapeSplit    = 0b10
)

// MarshalBinary encodes the PPRF, secrets included; store the result as
// securely as the key itself. The encoding is deterministic.
func (p *PPRF) MarshalBinary() ([]byte, error) {
	nh := p.suite.HashSize()
	var shape shapeWriter
	shape.walk(p.nodes, 0)
	w := codec.NewWriter(16 + len(shape.b) + len(p.nodes)*nh)
	stored.WriteHeader(w, stateV3, p.suite.ID())
	w.Uint16(uint16(p.bits))
	w.Opaque(shape.b)
	w.Vector(func(w *codec.Writer) {
		for _, n := range p.nodes {
			w.Raw(n.secret)
		}
	})
	return w.Bytes(), nil
}

// shapeWriter writes the version 3 shape.
type shapeWriter struct {
	b []byte
	n int // codes written
}

func (s *shapeWriter) put(code byte) {
	if s.n%4 == 0 {
		s.b = append(s.b, 0)
	}
	s.b[len(s.b)-1] |= code << (6 - 2*(s.n%4))
	s.n++
}

// walk codes the subtree at depth that holds nodes (sorted, disjoint, all
// in the subtree).
func (s *shapeWriter) walk(nodes []node, depth int) {
	switch {
	case len(nodes) == 0:
		s.put(shapeEmpty)
	case nodes[0].depth == depth:
		// Covering the whole subtree, it is its only node.
		s.put(shapeFrontier)
	default:
		s.put(shapeSplit)
		right := sort.Search(len(nodes), func(i int) bool { return bit(nodes[i].prefix, depth) == 1 })
		s.walk(nodes[:right], depth+1)
		s.walk(nodes[right:], depth+1)
	}
}

// UnmarshalBinary replaces p with the decoded state. It checks every
// invariant Evaluate relies on: a known suite, the leaf depth, secret
// sizes, node depths, that prefixes are canonical, and that the subtrees
// are sorted and disjoint.
func (p *PPRF) UnmarshalBinary(data []byte) error {
	var d PPRF
	r := codec.NewReader(data)
	d.unmarshal(r)
	if err := r.Finish("pprf_state"); err != nil {
		for _, n := range d.nodes {
			clear(n.secret)
		}
		return fmt.Errorf("decode pprf state: %w", err)
	}
	*p = d
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidState}, args...)...)
}

func (p *PPRF) unmarshal(r *codec.Reader) {
	version, s := stored.ReadHeaderVersions(r, "pprf_state", ErrInvalidState, stateV1, stateV2, stateV3)
	if s == nil {
		return
	}
	p.suite = s
	nh := s.HashSize()
	p.bits = 8 * nh
	if version == stateV2 || version == stateV3 {
		p.bits = int(r.Uint16("bits"))
		if r.Err() != nil {
			return
		}
		// The bound of NewIndexed; in version 2 it also keeps a state from
		// having the depth that version 1 encodes.
		if (p.bits < 1 || p.bits > maxIndexedBits) && (version == stateV2 || p.bits != 8*nh) {
			r.Fail("bits", invalid("leaf depth %d, want 1 to %d or %d", p.bits, maxIndexedBits, 8*nh))
			return
		}
	}
	if version == stateV3 {
		p.unmarshalShape(r)
		return
	}
	p.nodes = []node{}
	r.Each("nodes", func(r *codec.Reader) {
		depth := int(r.Uint16("nodes.depth"))
		prefix := r.Opaque("nodes.prefix")
		secret := r.Opaque("nodes.secret")
		if r.Err() != nil {
			return
		}
		if depth > p.bits {
			r.Fail("nodes.depth", invalid("depth %d beyond %d", depth, p.bits))
			return
		}
		if len(prefix) != prefixLen(depth) {
			r.Fail("nodes.prefix", invalid("%d bytes at depth %d", len(prefix), depth))
			return
		}
		// Only the canonical form is accepted, so that a state has one
		// encoding.
		if !canonical(prefix, depth) {
			r.Fail("nodes.prefix", invalid("bits beyond depth %d are set", depth))
			return
		}
		if len(secret) != nh {
			r.Fail("nodes.secret", invalid("%d bytes", len(secret)))
			return
		}
		n := node{depth: depth, prefix: make([]byte, prefixLen(p.bits)), secret: secret}
		copy(n.prefix, prefix)
		if k := len(p.nodes); k > 0 {
			prev := p.nodes[k-1]
			// Dyadic subtrees are nested or disjoint: sorted by first leaf
			// with the previous not covering this first leaf means disjoint.
			if bytes.Compare(prev.prefix, n.prefix) >= 0 || covers(prev, n.prefix) {
				r.Fail("nodes", invalid("node %d out of order or overlapping", k))
				return
			}
		}
		p.nodes = append(p.nodes, n)
	})
}

// unmarshalShape reads the shape and secrets of a version 3 state.
func (p *PPRF) unmarshalShape(r *codec.Reader) {
	shape := r.Opaque("shape")
	secrets := r.Opaque("secrets")
	if r.Err() != nil {
		return
	}
	nh := p.suite.HashSize()
	if len(secrets)%nh != 0 {
		r.Fail("secrets", invalid("%d bytes, not a multiple of %d", len(secrets), nh))
		return
	}
	sr := shapeReader{b: shape, bits: p.bits, secrets: secrets, nh: nh, prefix: make([]byte, prefixLen(p.bits))}
	nodes, _, err := sr.walk(nil, 0)
	if err == nil && len(sr.secrets) != 0 {
		err = invalid("%d secrets for %d frontier nodes", len(secrets)/nh, len(nodes))
	}
	if err == nil && (sr.n+3)/4 != len(shape) {
		err = invalid("%d bytes of shape after its last code", len(shape)-(sr.n+3)/4)
	}
	if err == nil && sr.n%4 != 0 && shape[len(shape)-1]&(0xff>>(2*(sr.n%4))) != 0 {
		err = invalid("bits set after the shape's last code")
	}
	if err != nil {
		r.Fail("shape", err)
		return
	}
	p.nodes = nodes
	if p.nodes == nil {
		p.nodes = []node{}
	}
}

// shapeReader reads the version 3 shape, taking each frontier node's
// secret from secrets as it goes.
type shapeReader struct {
	b       []byte
	n       int // codes read
	bits    int
	secrets []byte
	nh      int
	prefix  []byte // the path to the node being read; bits past it zero
}

// walk reads the subtree at depth whose path is r.prefix, appending its
// frontier nodes to nodes, and reports whether it was empty.
func (r *shapeReader) walk(nodes []node, depth int) ([]node, bool, error) {
	if r.n/4 >= len(r.b) {
		return nil, false, invalid("shape ends inside the walk")
	}
	code := r.b[r.n/4] >> (6 - 2*(r.n%4)) & 0b11
	r.n++
	switch code {
	case shapeEmpty:
		return nodes, true, nil
	case shapeFrontier:
		if len(r.secrets) < r.nh {
			return nil, false, invalid("fewer secrets than frontier nodes")
		}
		nodes = append(nodes, node{depth: depth, prefix: bytes.Clone(r.prefix), secret: r.secrets[:r.nh:r.nh]})
		r.secrets = r.secrets[r.nh:]
		return nodes, false, nil
	case shapeSplit:
		if depth == r.bits {
			return nil, false, invalid("the shape goes below a leaf")
		}
		nodes, leftEmpty, err := r.walk(nodes, depth+1)
		if err != nil {
			return nil, false, err
		}
		r.prefix[depth/8] |= 0x80 >> (depth % 8)
		nodes, rightEmpty, err := r.walk(nodes, depth+1)
		r.prefix[depth/8] &^= 0x80 >> (depth % 8)
		if err != nil {
			return nil, false, err
		}
		if leftEmpty && rightEmpty {
			return nil, false, invalid("a split of two empty subtrees at depth %d", depth)
		}
		return nodes, false, nil
	}
	return nil, false, invalid("shape code 3")
}
