package secrettree

import (
	"errors"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// Defaults for Options. MaxForward bounds the work a single message can
// force (each skipped generation costs three KDF calls); MaxRetained bounds
// the memory a ratchet holds for out-of-order delivery.
const (
	DefaultMaxForward  = 1000
	DefaultMaxRetained = 128

	// maxRetainedLimit caps MaxRetained so that a decoded state cannot
	// claim an unbounded retention window.
	maxRetainedLimit = 1 << 16
	// maxLeafCount is the largest full tree whose node indices fit the
	// uint32 NodeIndex of RFC 9420.
	maxLeafCount = uint32(treemath.MaxLeaves)
)

var (
	// ErrGenerationConsumed means the generation was already used, or its
	// retained key was discarded; a message asking for it is a replay or
	// arrived too late.
	ErrGenerationConsumed = errors.New("generation already consumed")
	// ErrGenerationTooFar means the generation is more than MaxForward
	// ahead of the ratchet.
	ErrGenerationTooFar = errors.New("generation too far ahead")
	// ErrLeafOutOfRange means the leaf index is not a leaf of this tree.
	ErrLeafOutOfRange = errors.New("leaf index out of range")
	// ErrRatchetExhausted means every generation of a sending ratchet has
	// been used.
	ErrRatchetExhausted = errors.New("ratchet exhausted")
	// ErrInvalidLeafCount means the leaf count is not a power of two
	// between 1 and 2^31.
	ErrInvalidLeafCount = errors.New("leaf count must be a power of two")
	// ErrInvalidState means an encoded state is malformed or inconsistent.
	ErrInvalidState = errors.New("invalid secret tree state")
)

// RatchetType selects one of a leaf's two hash ratchets.
type RatchetType uint8

const (
	// Handshake is the ratchet for proposals and commits.
	Handshake RatchetType = iota
	// Application is the ratchet for application messages.
	Application
)

func (k RatchetType) String() string {
	switch k {
	case Handshake:
		return "handshake"
	case Application:
		return "application"
	}
	return fmt.Sprintf("RatchetType(%d)", uint8(k))
}

// Key is the AEAD key and nonce of one ratchet generation. The nonce is the
// one from the key schedule, before the reuse guard is applied.
type Key struct {
	Generation uint32
	Key        []byte
	Nonce      []byte
}

func (k *Key) zero() {
	clear(k.Key)
	clear(k.Nonce)
}

// Options bounds out-of-order delivery. Zero fields take the defaults.
type Options struct {
	// MaxForward is how many generations past the ratchet's next one a
	// receiver will derive to reach a requested generation.
	MaxForward uint32
	// MaxRetained is how many skipped keys a ratchet keeps.
	MaxRetained int
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxForward == 0 {
		o.MaxForward = DefaultMaxForward
	}
	if o.MaxRetained == 0 {
		o.MaxRetained = DefaultMaxRetained
	}
	if o.MaxRetained < 0 || o.MaxRetained > maxRetainedLimit {
		return o, fmt.Errorf("secret tree: MaxRetained %d outside 1..%d", o.MaxRetained, maxRetainedLimit)
	}
	return o, nil
}

// Tree is the secret tree of one epoch.
type Tree struct {
	suite     *suite.Suite
	leafCount uint32
	opts      Options
	// nodes holds the secrets derived but not yet consumed; together with
	// the leaves that have ratchets they cover every leaf exactly once.
	nodes  map[uint32][]byte
	leaves map[uint32]*leafState
	// skipped is how many generations the last successful Receive
	// stepped over (Skipped); not part of the tree's state.
	skipped int
}

type leafState struct {
	ratchets [2]ratchet // indexed by RatchetType
}

// New returns the secret tree with encryptionSecret at its root, for a
// ratchet tree of leafCount leaves (a power of two). It copies the secret;
// the caller should zero its own copy once the key schedule is done with it.
func New(s *suite.Suite, encryptionSecret []byte, leafCount uint32, opts Options) (*Tree, error) {
	if leafCount == 0 || leafCount > maxLeafCount || leafCount&(leafCount-1) != 0 {
		return nil, fmt.Errorf("secret tree: %w: %d", ErrInvalidLeafCount, leafCount)
	}
	if len(encryptionSecret) != s.HashSize() {
		return nil, fmt.Errorf("secret tree: encryption secret is %d bytes, want %d", len(encryptionSecret), s.HashSize())
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Tree{
		suite:     s,
		leafCount: leafCount,
		opts:      opts,
		nodes:     map[uint32][]byte{rootOf(leafCount): clone(encryptionSecret)},
		leaves:    map[uint32]*leafState{},
	}, nil
}

// Suite returns the cipher suite the tree derives keys with.
func (t *Tree) Suite() *suite.Suite { return t.suite }

// LeafCount returns the number of leaves.
func (t *Tree) LeafCount() uint32 { return t.leafCount }

// Clone returns an independent deep copy of t.
func (t *Tree) Clone() *Tree {
	c := &Tree{
		suite:     t.suite,
		leafCount: t.leafCount,
		opts:      t.opts,
		nodes:     make(map[uint32][]byte, len(t.nodes)),
		leaves:    make(map[uint32]*leafState, len(t.leaves)),
	}
	for i, s := range t.nodes {
		c.nodes[i] = clone(s)
	}
	for i, l := range t.leaves {
		c.leaves[i] = &leafState{ratchets: [2]ratchet{l.ratchets[0].clone(), l.ratchets[1].clone()}}
	}
	return c
}

// Zero erases every secret the tree holds. The tree is unusable afterwards;
// call it when the epoch is discarded for good.
func (t *Tree) Zero() {
	for i, s := range t.nodes {
		clear(s)
		delete(t.nodes, i)
	}
	for i, l := range t.leaves {
		l.ratchets[0].zero()
		l.ratchets[1].zero()
		delete(t.leaves, i)
	}
}

// leaf returns the ratchets of leaf, deriving the path to it on first use.
func (t *Tree) leaf(leaf uint32) (*leafState, error) {
	if leaf >= t.leafCount {
		return nil, fmt.Errorf("secret tree: %w: leaf %d of %d", ErrLeafOutOfRange, leaf, t.leafCount)
	}
	if ls, ok := t.leaves[leaf]; ok {
		return ls, nil
	}
	target := leafNode(leaf)
	// Walk down from the root to the one stored ancestor of target.
	x := rootOf(t.leafCount)
	for {
		if _, ok := t.nodes[x]; ok {
			break
		}
		if level(x) == 0 {
			// Unreachable for a consistent state: every leaf is covered.
			return nil, fmt.Errorf("secret tree: %w: no secret covers leaf %d", ErrInvalidState, leaf)
		}
		x = t.child(x, target)
	}
	secret := t.nodes[x]
	delete(t.nodes, x)
	for x != target {
		left := t.suite.ExpandWithLabel(secret, "tree", []byte("left"), t.suite.HashSize())
		right := t.suite.ExpandWithLabel(secret, "tree", []byte("right"), t.suite.HashSize())
		clear(secret)
		if target < x {
			t.nodes[rightOf(x)] = right
			secret, x = left, leftOf(x)
		} else {
			t.nodes[leftOf(x)] = left
			secret, x = right, rightOf(x)
		}
	}
	ls := &leafState{ratchets: [2]ratchet{
		Handshake:   {secret: t.suite.ExpandWithLabel(secret, "handshake", nil, t.suite.HashSize())},
		Application: {secret: t.suite.ExpandWithLabel(secret, "application", nil, t.suite.HashSize())},
	}}
	clear(secret)
	t.leaves[leaf] = ls
	return ls, nil
}

func (t *Tree) child(x, target uint32) uint32 {
	if target < x {
		return leftOf(x)
	}
	return rightOf(x)
}

func (t *Tree) ratchet(leaf uint32, kind RatchetType) (*ratchet, error) {
	if kind != Handshake && kind != Application {
		return nil, fmt.Errorf("secret tree: unknown ratchet type %d", kind)
	}
	ls, err := t.leaf(leaf)
	if err != nil {
		return nil, err
	}
	return &ls.ratchets[kind], nil
}

// Send takes the next unused generation of the leaf's ratchet for sending
// and passes its key to use. The generation is consumed before use runs, so
// that it is never reused even if sending fails. Key and nonce are zeroed
// when use returns; use must copy anything it keeps.
func (t *Tree) Send(leaf uint32, kind RatchetType, use func(Key) error) error {
	r, err := t.ratchet(leaf, kind)
	if err != nil {
		return err
	}
	if r.next > maxGeneration {
		return fmt.Errorf("secret tree: leaf %d %v: %w", leaf, kind, ErrRatchetExhausted)
	}
	k := r.step(t.suite)
	defer k.zero()
	return use(k)
}

// Receive derives the key of the given generation of the leaf's ratchet and
// passes it to use. Only if use returns nil is the generation consumed: the
// ratchet advances, generations it skipped are retained, and the key is
// deleted. If use fails, the ratchet is as it was (the path to the leaf may
// have been derived, which loses nothing). Key and nonce are zeroed when use
// returns.
func (t *Tree) Receive(leaf uint32, kind RatchetType, generation uint32, use func(Key) error) error {
	r, err := t.ratchet(leaf, kind)
	if err != nil {
		return err
	}
	next := r.next
	if err := r.receive(t.suite, t.opts, generation, use); err != nil {
		return fmt.Errorf("secret tree: leaf %d %v generation %d: %w", leaf, kind, generation, err)
	}
	t.skipped = 0
	if uint64(generation) > next {
		t.skipped = int(uint64(generation) - next)
	}
	return nil
}

// Skipped returns how many generations of its ratchet the last successful
// Receive stepped over: messages of that sender that were not received
// before this one (lost, or still on their way). Their keys are kept,
// within Options.MaxRetained, for when they arrive.
func (t *Tree) Skipped() int { return t.skipped }

func clone(b []byte) []byte { return append([]byte(nil), b...) }
