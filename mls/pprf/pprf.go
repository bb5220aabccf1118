package pprf

import (
	"bytes"
	"fmt"
	"slices"
	"sort"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// maxIndexedBits bounds the leaf depth of NewIndexed. An indexed PPRF
// holds a batch of one-time secrets that is created and stored as a whole,
// so 2^32 leaves is far more than any batch needs; the bound keeps indexes
// within a uint32 and, being below 8·KDF.Nh for every suite, keeps indexed
// PPRFs apart from the DMLS ones in the encoding.
const maxIndexedBits = 32

// PPRF is the state of one puncturable PRF: the frontier of subtree roots
// whose secrets are still held. The zero value is not usable; make one with
// New, NewIndexed or UnmarshalBinary.
type PPRF struct {
	suite *suite.Suite
	// bits is the depth of the leaves, and so the length of an input in
	// bits: 8·KDF.Nh for New, the caller's choice for NewIndexed.
	bits int
	// nodes is sorted by prefix (the first leaf of each subtree) and the
	// subtrees are pairwise disjoint, so one binary search finds the only
	// node that can cover an input.
	nodes []node
}

// node is the root of a whole subtree. Its prefix has the length of an
// input: the first depth bits are the path from the root, the rest are
// zero, so the prefix is also the subtree's smallest leaf.
type node struct {
	depth  int
	prefix []byte
	secret []byte
}

// New returns a PPRF keyed by secret, which must be KDF.Nh bytes long,
// whose inputs are KDF.Nh bytes: the DMLS DeriveFSSecret. The PPRF keeps
// its own copy; the caller may wipe secret afterwards.
func New(s *suite.Suite, secret []byte) (*PPRF, error) {
	return newPPRF(s, secret, 8*s.HashSize())
}

// NewIndexed returns a PPRF keyed by secret, which must be KDF.Nh bytes
// long, whose leaves are at depth bits (1 to 32), so that it has 2^bits
// outputs addressed by EvaluateIndex. See "Indexed PPRFs" in the package
// documentation.
func NewIndexed(s *suite.Suite, secret []byte, bits int) (*PPRF, error) {
	if bits < 1 || bits > maxIndexedBits {
		return nil, fmt.Errorf("%w: %d bits, want 1 to %d", ErrLeafDepth, bits, maxIndexedBits)
	}
	return newPPRF(s, secret, bits)
}

func newPPRF(s *suite.Suite, secret []byte, bits int) (*PPRF, error) {
	nh := s.HashSize()
	if len(secret) != nh {
		return nil, fmt.Errorf("%w: key of %d bytes, want %d", ErrInputLength, len(secret), nh)
	}
	root := node{depth: 0, prefix: make([]byte, prefixLen(bits)), secret: bytes.Clone(secret)}
	return &PPRF{suite: s, bits: bits, nodes: []node{root}}, nil
}

// Suite returns the cipher suite whose KDF the PPRF uses.
func (p *PPRF) Suite() *suite.Suite { return p.suite }

// Bits returns the depth of the leaves: 8·KDF.Nh for a PPRF made by New,
// the bits given to NewIndexed otherwise. Inputs to Evaluate are
// ceil(Bits()/8) bytes and indexes to EvaluateIndex are below 2^Bits().
func (p *PPRF) Bits() int { return p.bits }

// Len returns the number of node secrets the PPRF holds, a measure of how
// much it costs to store.
func (p *PPRF) Len() int { return len(p.nodes) }

// Evaluate is the draft's DeriveFSSecret(secret, input): it returns the
// output for input and punctures the PPRF at input, so that a second
// Evaluate of the same input fails with ErrPunctured. For a PPRF made by
// New, input is KDF.Nh bytes; in general it is the leaf's path,
// ceil(Bits()/8) bytes with the bits past Bits() zero. On error the PPRF
// is unchanged.
func (p *PPRF) Evaluate(input []byte) ([]byte, error) {
	if n := prefixLen(p.bits); len(input) != n {
		return nil, fmt.Errorf("%w: input of %d bytes, want %d", ErrInputLength, len(input), n)
	}
	// A set bit past the leaf depth would name no leaf, or, if ignored,
	// give two inputs the same output.
	if !canonical(input, p.bits) {
		return nil, fmt.Errorf("%w: input has bits set past bit %d", ErrInputLength, p.bits)
	}
	return p.evaluate(input)
}

// EvaluateIndex returns the output for leaf number i and punctures the
// PPRF there, like Evaluate. Leaf i is the one whose path from the root is
// the low Bits() bits of i, most significant first, so leaves are numbered
// from left to right. An index of 2^Bits() or more fails with
// ErrIndexRange.
func (p *PPRF) EvaluateIndex(i uint64) ([]byte, error) {
	if p.bits < 64 && i>>p.bits != 0 {
		return nil, fmt.Errorf("%w: index %d of a tree of depth %d", ErrIndexRange, i, p.bits)
	}
	return p.evaluate(indexInput(i, p.bits))
}

// evaluate implements Evaluate for an input already known to be well
// formed.
func (p *PPRF) evaluate(input []byte) ([]byte, error) {
	i, ok := p.find(input)
	if !ok {
		return nil, ErrPunctured
	}
	start := p.nodes[i]
	nh := p.suite.HashSize()

	// Siblings that branch off to the left come before the remaining path
	// in leaf order, those to the right after it; collecting them apart
	// keeps the replacement run sorted without a sort.
	var lefts, rights []node
	secret := start.secret
	for d := start.depth; d < p.bits; d++ {
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
	c := &PPRF{suite: p.suite, bits: p.bits, nodes: make([]node, len(p.nodes))}
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

// prefixLen returns the number of bytes that hold depth bits.
func prefixLen(depth int) int { return (depth + 7) / 8 }

// indexInput returns the input of leaf i in a tree of depth bits: the low
// bits bits of i, most significant first, in prefixLen(bits) bytes.
func indexInput(i uint64, bits int) []byte {
	in := make([]byte, prefixLen(bits))
	// Bit j of i is the step at depth bits-1-j; in a tree deeper than 64
	// the first bits-64 steps are zero.
	for j := range min(bits, 64) {
		d := bits - 1 - j
		in[d/8] |= byte(i>>j&1) << (7 - d%8)
	}
	return in
}

// bit returns bit d of b, counting from the most significant bit of b[0].
func bit(b []byte, d int) byte {
	return (b[d/8] >> (7 - d%8)) & 1
}

// canonical reports whether every bit of b after the first n is zero, for
// b of prefixLen(n) bytes.
func canonical(b []byte, n int) bool {
	rem := n % 8
	return rem == 0 || b[len(b)-1]&(0xff>>rem) == 0
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
