package secrettree

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/internal/stored"
)

// stateVersion is the first byte of an encoded Tree. Bump it whenever the
// layout below changes, and keep decoding the old layouts.
//
// Version 1, in the TLS presentation language:
//
//	struct { uint32 node; opaque secret<V>; } NodeSecret;
//	struct { uint32 generation; opaque key<V>; opaque nonce<V>; } SkippedKey;
//	struct { uint64 next; opaque secret<V>; SkippedKey skipped<V>; } Ratchet;
//	struct { uint32 leaf; Ratchet handshake; Ratchet application; } LeafRatchets;
//	struct {
//	    uint8 version = 1;
//	    uint16 cipher_suite;
//	    uint32 leaf_count;
//	    uint32 max_forward;
//	    uint32 max_retained;
//	    NodeSecret nodes<V>;      // ascending by node
//	    LeafRatchets leaves<V>;   // ascending by leaf
//	} SecretTreeState;
const stateVersion = 1

// MarshalBinary encodes the whole state, secrets included; the result must
// be stored as securely as the tree itself. The encoding is deterministic.
func (t *Tree) MarshalBinary() ([]byte, error) {
	var w codec.Writer
	stored.WriteHeader(&w, stateVersion, t.suite.ID())
	w.Uint32(t.leafCount)
	w.Uint32(t.opts.MaxForward)
	w.Uint32(uint32(t.opts.MaxRetained))
	w.Vector(func(w *codec.Writer) {
		for _, n := range slices.Sorted(maps.Keys(t.nodes)) {
			w.Uint32(n)
			w.Opaque(t.nodes[n])
		}
	})
	w.Vector(func(w *codec.Writer) {
		for _, l := range slices.Sorted(maps.Keys(t.leaves)) {
			w.Uint32(l)
			for i := range t.leaves[l].ratchets {
				r := &t.leaves[l].ratchets[i]
				w.Uint64(r.next)
				w.Opaque(r.secret)
				w.Vector(func(w *codec.Writer) {
					for _, k := range r.skipped {
						w.Uint32(k.Generation)
						w.Opaque(k.Key)
						w.Opaque(k.Nonce)
					}
				})
			}
		}
	})
	return w.Bytes(), nil
}

// UnmarshalBinary replaces t with the decoded state. It checks everything a
// Tree relies on: sizes of every secret, orderings, bounds, and that the
// stored node secrets and leaf ratchets cover each leaf exactly once.
func (t *Tree) UnmarshalBinary(data []byte) error {
	var d Tree
	r := codec.NewReader(data)
	d.unmarshal(r)
	if err := r.Finish("secret_tree_state"); err != nil {
		return fmt.Errorf("decode secret tree state: %w", err)
	}
	*t = d
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidState}, args...)...)
}

func (t *Tree) unmarshal(r *codec.Reader) {
	s := stored.ReadHeader(r, "secret_tree_state", stateVersion, ErrInvalidState)
	if s == nil {
		return
	}
	t.suite = s
	t.leafCount = r.Uint32("leaf_count")
	t.opts.MaxForward = r.Uint32("max_forward")
	maxRetained := r.Uint32("max_retained")
	if r.Err() != nil {
		return
	}
	if n := t.leafCount; n == 0 || n > maxLeafCount || n&(n-1) != 0 {
		r.Fail("leaf_count", invalid("%d leaves", n))
		return
	}
	if t.opts.MaxForward == 0 || maxRetained == 0 || maxRetained > maxRetainedLimit {
		r.Fail("max_retained", invalid("limits %d forward, %d retained", t.opts.MaxForward, maxRetained))
		return
	}
	t.opts.MaxRetained = int(maxRetained)

	nh, nk, nn := s.HashSize(), s.KeySize(), s.NonceSize()
	lastNode := 2*uint64(t.leafCount) - 2
	t.nodes = map[uint32][]byte{}
	var prev int64 = -1
	r.Each("nodes", func(r *codec.Reader) {
		n := r.Uint32("nodes.node")
		secret := r.Opaque("nodes.secret")
		switch {
		case r.Err() != nil:
		case uint64(n) > lastNode || int64(n) <= prev:
			r.Fail("nodes.node", invalid("node %d out of order or range", n))
		case len(secret) != nh:
			r.Fail("nodes.secret", invalid("%d bytes", len(secret)))
		default:
			t.nodes[n] = secret
			prev = int64(n)
		}
	})

	t.leaves = map[uint32]*leafState{}
	prev = -1
	r.Each("leaves", func(r *codec.Reader) {
		l := r.Uint32("leaves.leaf")
		if r.Err() == nil && (l >= t.leafCount || int64(l) <= prev) {
			r.Fail("leaves.leaf", invalid("leaf %d out of order or range", l))
			return
		}
		prev = int64(l)
		ls := &leafState{}
		for i := range ls.ratchets {
			ls.ratchets[i] = unmarshalRatchet(r, nh, nk, nn, t.opts.MaxRetained)
		}
		if r.Err() == nil {
			t.leaves[l] = ls
		}
	})
	if r.Err() == nil && !t.coversEachLeafOnce() {
		r.Fail("nodes", invalid("stored secrets do not cover each leaf exactly once"))
	}
}

func unmarshalRatchet(r *codec.Reader, nh, nk, nn, maxRetained int) ratchet {
	var rt ratchet
	rt.next = r.Uint64("ratchet.next")
	rt.secret = r.Opaque("ratchet.secret")
	if r.Err() != nil {
		return rt
	}
	if rt.next > maxGeneration+1 {
		r.Fail("ratchet.next", invalid("generation %d", rt.next))
	}
	if len(rt.secret) != nh {
		r.Fail("ratchet.secret", invalid("%d bytes", len(rt.secret)))
	}
	rt.skipped = []Key{}
	var prev int64 = -1
	r.Each("ratchet.skipped", func(r *codec.Reader) {
		k := Key{Generation: r.Uint32("skipped.generation"), Key: r.Opaque("skipped.key"), Nonce: r.Opaque("skipped.nonce")}
		switch {
		case r.Err() != nil:
		case int64(k.Generation) <= prev || uint64(k.Generation) >= rt.next:
			r.Fail("skipped.generation", invalid("generation %d out of order or not skipped", k.Generation))
		case len(k.Key) != nk || len(k.Nonce) != nn:
			r.Fail("skipped.key", invalid("key %d bytes, nonce %d bytes", len(k.Key), len(k.Nonce)))
		case len(rt.skipped) == maxRetained:
			r.Fail("ratchet.skipped", invalid("more than %d retained keys", maxRetained))
		default:
			rt.skipped = append(rt.skipped, k)
			prev = int64(k.Generation)
		}
	})
	return rt
}

// coversEachLeafOnce checks that the subtrees of the stored node secrets and
// the leaves with ratchets are disjoint and together hold every leaf.
func (t *Tree) coversEachLeafOnce() bool {
	type interval struct{ lo, hi uint32 }
	spans := make([]interval, 0, len(t.nodes)+len(t.leaves))
	for n := range t.nodes {
		lo, hi := span(n)
		spans = append(spans, interval{lo, hi})
	}
	for l := range t.leaves {
		spans = append(spans, interval{leafNode(l), leafNode(l)})
	}
	slices.SortFunc(spans, func(a, b interval) int { return cmp.Compare(a.lo, b.lo) })
	var leaves uint64
	for i, s := range spans {
		if i > 0 && s.lo <= spans[i-1].hi {
			return false
		}
		leaves += uint64(s.hi-s.lo)/2 + 1
	}
	return leaves == uint64(t.leafCount)
}
