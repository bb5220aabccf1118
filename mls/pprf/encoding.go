package pprf

import (
	"bytes"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
)

// stateVersion is the first byte of an encoded PPRF. Bump it whenever the
// layout below changes, and keep decoding the old layouts.
//
// Version 1, in the TLS presentation language:
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
const stateVersion = 1

// MarshalBinary encodes the PPRF, secrets included; store the result as
// securely as the key itself. The encoding is deterministic.
func (p *PPRF) MarshalBinary() ([]byte, error) {
	nh := p.suite.HashSize()
	w := codec.NewWriter(8 + len(p.nodes)*(2*nh+5))
	stored.WriteHeader(w, stateVersion, p.suite.ID())
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
// invariant Evaluate relies on: a known suite, secret sizes, depths, that
// prefixes are canonical, and that the subtrees are sorted and disjoint.
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

func prefixLen(depth int) int { return (depth + 7) / 8 }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidState}, args...)...)
}

func (p *PPRF) unmarshal(r *codec.Reader) {
	s := stored.ReadHeader(r, "pprf_state", stateVersion, ErrInvalidState)
	if s == nil {
		return
	}
	p.suite = s
	nh := s.HashSize()
	p.nodes = []node{}
	r.Each("nodes", func(r *codec.Reader) {
		depth := int(r.Uint16("nodes.depth"))
		prefix := r.Opaque("nodes.prefix")
		secret := r.Opaque("nodes.secret")
		if r.Err() != nil {
			return
		}
		if depth > 8*nh {
			r.Fail("nodes.depth", invalid("depth %d beyond %d", depth, 8*nh))
			return
		}
		if len(prefix) != prefixLen(depth) {
			r.Fail("nodes.prefix", invalid("%d bytes at depth %d", len(prefix), depth))
			return
		}
		// Only the canonical form is accepted, so that a state has one
		// encoding.
		if rem := depth % 8; rem != 0 && prefix[len(prefix)-1]&(0xff>>rem) != 0 {
			r.Fail("nodes.prefix", invalid("bits beyond depth %d are set", depth))
			return
		}
		if len(secret) != nh {
			r.Fail("nodes.secret", invalid("%d bytes", len(secret)))
			return
		}
		n := node{depth: depth, prefix: make([]byte, nh), secret: secret}
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
