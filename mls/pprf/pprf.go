package pprf

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// PPRF is the state of one puncturable PRF: the frontier of subtree roots
// whose secrets are still held. The zero value is not usable; make one with
// New or UnmarshalBinary.
type PPRF struct {
	suite *suite.Suite
	// nodes is sorted by prefix (the first leaf of each subtree) and the
	// subtrees are pairwise disjoint, so one binary search finds the only
	// node that can cover an input.
	nodes []node
}

// node is the root of a whole subtree. Its prefix is Nh bytes: the first
// depth bits are the path from the root, the rest are zero, so the prefix
// is also the subtree's smallest leaf.
type node struct {
	depth  int
	prefix []byte
	secret []byte
}

// New returns a PPRF keyed by secret, which must be KDF.Nh bytes long. The
// PPRF keeps its own copy; the caller may wipe secret afterwards.
func New(s *suite.Suite, secret []byte) (*PPRF, error) {
	nh := s.HashSize()
	if len(secret) != nh {
		return nil, fmt.Errorf("%w: key of %d bytes, want %d", ErrInputLength, len(secret), nh)
	}
	root := node{depth: 0, prefix: make([]byte, nh), secret: bytes.Clone(secret)}
	return &PPRF{suite: s, nodes: []node{root}}, nil
}

// Suite returns the cipher suite whose KDF the PPRF uses.
func (p *PPRF) Suite() *suite.Suite { return p.suite }

// Len returns the number of node secrets the PPRF holds, a measure of how
// much it costs to store.
func (p *PPRF) Len() int { return len(p.nodes) }

// Evaluate is the draft's DeriveFSSecret(secret, input): it returns the
// output for input (KDF.Nh bytes) and punctures the PPRF at input, so that
// a second Evaluate of the same input fails with ErrPunctured. On error the
// PPRF is unchanged.
func (p *PPRF) Evaluate(input []byte) ([]byte, error) {
	nh := p.suite.HashSize()
	if len(input) != nh {
		return nil, fmt.Errorf("%w: input of %d bytes, want %d", ErrInputLength, len(input), nh)
	}
	i, ok := p.find(input)
	if !ok {
		return nil, ErrPunctured
	}
	start := p.nodes[i]
	leafDepth := 8 * nh

	// Siblings that branch off to the left come before the remaining path
	// in leaf order, those to the right after it; collecting them apart
	// keeps the replacement run sorted without a sort.
	var lefts, rights []node
	secret := start.secret
	for d := start.depth; d < leafDepth; d++ {
		left := p.suite.ExpandWithLabel(secret, "tree", []byte("left"), nh)
		right := p.suite.ExpandWithLabel(secret, "tree", []byte("right"), nh)
		clear(secret)
		if bit(input, d) == 0 {
			rights = append(rights, node{depth: d + 1, prefix: childPrefix(input, d, 1), secret: right})
			secret = left
		} else {
			lefts = append(lefts, node{depth: d + 1, prefix: childPrefix(input, d, 0), secret: left})
			secret = right
		}
	}
	out := p.suite.DeriveSecret(secret, "pprf")
	clear(secret)

	slices.Reverse(rights)
	run := append(lefts, rights...)
	p.nodes = slices.Replace(p.nodes, i, i+1, run...)
	return out, nil
}

// find returns the index of the frontier node whose subtree holds the leaf
// input, if there is one.
func (p *PPRF) find(input []byte) (int, bool) {
	// The covering node, if any, is the last one whose first leaf is not
	// after input.
	i := sort.Search(len(p.nodes), func(i int) bool {
		return bytes.Compare(p.nodes[i].prefix, input) > 0
	}) - 1
	if i < 0 || !covers(p.nodes[i], input) {
		return 0, false
	}
	return i, true
}

// Clone returns an independent copy that shares no memory with p, so that
// evaluating or wiping one never affects the other.
func (p *PPRF) Clone() *PPRF {
	c := &PPRF{suite: p.suite, nodes: make([]node, len(p.nodes))}
	for i, n := range p.nodes {
		c.nodes[i] = node{depth: n.depth, prefix: bytes.Clone(n.prefix), secret: bytes.Clone(n.secret)}
	}
	return c
}

// Wipe zeroes every secret p holds and empties it; every later Evaluate
// fails with ErrPunctured.
func (p *PPRF) Wipe() {
	for _, n := range p.nodes {
		clear(n.secret)
	}
	p.nodes = nil
}

// bit returns bit d of b, counting from the most significant bit of b[0].
func bit(b []byte, d int) byte {
	return (b[d/8] >> (7 - d%8)) & 1
}

// childPrefix returns the prefix of the child of the depth-d node on the
// path to input that takes branch b at depth d: input's first d bits, then
// b, then zeros.
func childPrefix(input []byte, d int, b byte) []byte {
	p := make([]byte, len(input))
	copy(p, input[:d/8])
	keep := byte(0xff) << (8 - d%8) // the first d%8 bits of byte d/8
	p[d/8] = input[d/8]&keep | b<<(7-d%8)
	return p
}

// covers reports whether input's first n.depth bits equal n's prefix.
func covers(n node, input []byte) bool {
	full := n.depth / 8
	if !bytes.Equal(n.prefix[:full], input[:full]) {
		return false
	}
	if r := n.depth % 8; r != 0 {
		mask := byte(0xff) << (8 - r)
		return input[full]&mask == n.prefix[full]
	}
	return true
}
