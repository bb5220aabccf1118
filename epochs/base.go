package epochs

import (
	"bytes"
	"cmp"
	"fmt"
	"strings"
)

// Compare orders epochs as base candidates: it returns +1 if a is the
// better base, -1 if b is, 0 only if a == b. The order (package doc, "Base
// selection") is: the higher epoch number; then, on the branches' first
// differing commit, the higher confirmation tag; then the higher dmls_epoch
// of that commit. It is a total order, the same for every member that
// knows the same history.
func (g *Graph[S]) Compare(a, b ID) int {
	if a == b {
		return 0
	}
	na, nb := g.nodes[a], g.nodes[b]
	switch {
	case na == nil && nb == nil:
		return strings.Compare(string(a), string(b))
	case na == nil:
		return -1
	case nb == nil:
		return 1
	}
	if c := cmp.Compare(na.Number, nb.Number); c != 0 {
		return c
	}
	// Lexicographic comparison of the chains from the oldest known
	// ancestor decides at the first differing commit. Chains that never
	// meet (a member that lacks the history) are decided by their oldest
	// known nodes, which keeps the order total; such a member should fetch
	// the missing commits (DESIGN §5) before it resolves.
	x, y := g.chain(a), g.chain(b)
	for i := 0; i < len(x) && i < len(y); i++ {
		if c := compareCommits(x[i], y[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(x), len(y))
}

func compareCommits[S any](a, b *Node[S]) int {
	if a.ID == b.ID {
		return 0
	}
	if c := bytes.Compare(a.ConfirmationTag, b.ConfirmationTag); c != 0 {
		return c
	}
	return strings.Compare(string(a.ID), string(b.ID))
}

// Base returns the head that the next commit must be made on.
func (g *Graph[S]) Base() (ID, error) {
	heads := g.Heads()
	if len(heads) == 0 {
		return "", ErrNoHeads
	}
	return heads[0], nil
}

// Resolution says what a resolving commit must name. It is built on Base
// and names every other head, in our form (dmls_resolves) and in MSC2883's
// (resolves), in the same order.
type Resolution struct {
	Base          ID
	BaseIdentity  Identity
	Resolves      []ID
	ResolvesPairs []ResolvesPair
}

// Resolution returns the base and the heads a commit made now must
// resolve. With one head, Resolves is empty: an ordinary commit.
func (g *Graph[S]) Resolution() (Resolution, error) {
	heads := g.Heads()
	if len(heads) == 0 {
		return Resolution{}, ErrNoHeads
	}
	r := Resolution{Base: heads[0], BaseIdentity: g.nodes[heads[0]].Identity}
	for _, h := range heads[1:] {
		n := g.nodes[h]
		r.Resolves = append(r.Resolves, h)
		r.ResolvesPairs = append(r.ResolvesPairs, ResolvesPair{Number: n.Number, Creator: n.Creator})
	}
	return r, nil
}

// ResolvedIDs maps a received commit's MSC2883 resolves pairs to known
// epochs, for a sender that did not include dmls_resolves. A pair that
// names no known head, or more than one, is reported as an error and
// skipped: guessing could retire the wrong branch.
func (g *Graph[S]) ResolvedIDs(pairs []ResolvesPair) ([]ID, error) {
	var out []ID
	var errs []error
	for _, p := range pairs {
		var match []ID
		for _, id := range g.Find(p) {
			if g.isHead(id) {
				match = append(match, id)
			}
		}
		if len(match) != 1 {
			errs = append(errs, fmt.Errorf("resolves [%d, %v]: %d matching heads", p.Number, p.Creator, len(match)))
			continue
		}
		out = append(out, match[0])
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%w: %v", ErrUnknownEpoch, errs)
	}
	return out, nil
}
