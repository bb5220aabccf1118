package pprf

import (
	"bytes"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
)

// The first byte of an encoded PPRF is its format version. A new layout
// gets a new number, and the old ones keep decoding, since stored states
// outlive binaries. The leaf depth picks the version, so that every state
// has exactly one encoding.
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
const (
	stateV1 = 1
	stateV2 = 2
)

// MarshalBinary encodes the PPRF, secrets included; store the result as
// securely as the key itself. The encoding is deterministic.
func (p *PPRF) MarshalBinary() ([]byte, error) {
	nh := p.suite.HashSize()
	w := codec.NewWriter(10 + len(p.nodes)*(nh+prefixLen(p.bits)+6))
	if p.bits == 8*nh {
		stored.WriteHeader(w, stateV1, p.suite.ID())
	} else {
		stored.WriteHeader(w, stateV2, p.suite.ID())
		w.Uint16(uint16(p.bits))
	}
	w.Vector(func(w *codec.Writer) {
		for _, n := range p.nodes {
			w.Uint16(uint16(n.depth))
			w.Opaque(n.prefix[:prefixLen(n.depth)])
			w.Opaque(n.secret)
		}
	})
	return w.Bytes(), nil
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
	version, s := stored.ReadHeaderVersions(r, "pprf_state", ErrInvalidState, stateV1, stateV2)
	if s == nil {
		return
	}
	p.suite = s
	nh := s.HashSize()
	p.bits = 8 * nh
	if version == stateV2 {
		p.bits = int(r.Uint16("bits"))
		if r.Err() != nil {
			return
		}
		// The bound of NewIndexed; it also keeps a version 2 state from
		// having the depth that version 1 encodes.
		if p.bits < 1 || p.bits > maxIndexedBits {
			r.Fail("bits", invalid("leaf depth %d, want 1 to %d", p.bits, maxIndexedBits))
			return
		}
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
