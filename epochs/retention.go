package epochs

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Policy bounds how many old epochs a member keeps and for how long.
type Policy struct {
	// MaxEpochs bounds the retained epochs, heads included; heads are
	// never dropped, so there may be more heads than this. Zero: no bound.
	MaxEpochs int
	// MaxAge drops an epoch this long after it was superseded. Zero: no
	// bound.
	MaxAge time.Duration
	// Linger keeps an epoch that has settled (every member moved on) until
	// this long after the latest move above it: the Added time of the
	// newest epoch above it, or the last time one of them heard a member
	// speak for the first time. Messages a member sent in the epoch
	// before it moved on precede the move in the room's DAG, but not
	// always in arrival: after a partition the homeserver may deliver the
	// move first and leave the messages in a hole that is paged back
	// later (DESIGN §7). Zero: a settled epoch goes at once.
	Linger time.Duration
}

// Expired returns the retained epochs that the policy drops now, in
// dmls_epoch byte order (package doc, "Retention"). It never returns a
// head. It changes nothing; pass the result to Drop.
func (g *Graph[S]) Expired(p Policy, now time.Time) []ID {
	drop, _ := g.expired(p, now, ownView[S]{})
	return drop
}

// ownView is what a Member knows about its own devices beyond the graph,
// for retention (Member.Retain); the zero value knows nothing.
type ownView[S any] struct {
	// footholds are epochs that the count bound never drops (age and
	// settlement still do).
	footholds map[ID]bool
	// past, if not nil, gives for an epoch a test of whether a device of
	// ours is known to have moved on from it for good
	// (Member.pastForGood), asked about devices in ascending order.
	past func(*Node[S]) func(Device) bool
	// ours are our devices, sorted, and tentative the epochs at or above
	// a commit of ours that may still be withdrawn (not confirmed): what
	// our devices did there shows no move for good, since a withdrawal
	// takes them back to the commit's base (Member.tentative).
	ours      []Device
	tentative map[ID]bool
}

// expired is Expired with what the Member knows of its own devices. It
// also returns when an epoch it keeps would go next by age or by the end
// of its linger, if nothing else changed (zero: none would): a room that
// falls quiet must run retention then, since nothing else will.
func (g *Graph[S]) expired(p Policy, now time.Time, own ownView[S]) ([]ID, time.Time) {
	heads := g.headSet()
	var candidates []*Node[S]
	retained := 0
	for id, n := range g.nodes {
		if !n.Retained {
			continue
		}
		retained++
		if !heads[id] {
			candidates = append(candidates, n)
		}
	}
	drop := map[ID]bool{}
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, n := range candidates {
		aging := p.MaxAge > 0 && !n.Superseded.IsZero()
		if aging && now.Sub(n.Superseded) >= p.MaxAge {
			drop[n.ID] = true
			continue
		}
		if g.settled(n, heads, own) {
			end := now
			if p.Linger > 0 {
				end = g.lastMoveAbove(n, now).Add(p.Linger)
			}
			if !end.After(now) {
				drop[n.ID] = true
				continue
			}
			later(end)
		}
		if aging {
			later(n.Superseded.Add(p.MaxAge))
		}
	}
	if p.MaxEpochs > 0 && retained-len(drop) > p.MaxEpochs {
		// Oldest superseded first; the number and ID only break ties.
		slices.SortFunc(candidates, func(a, b *Node[S]) int {
			if c := a.Superseded.Compare(b.Superseded); c != 0 {
				return c
			}
			if c := cmp.Compare(a.Number, b.Number); c != 0 {
				return c
			}
			return strings.Compare(string(a.ID), string(b.ID))
		})
		for _, n := range candidates {
			if retained-len(drop) <= p.MaxEpochs {
				break
			}
			if !own.footholds[n.ID] {
				drop[n.ID] = true
			}
		}
	}
	out := make([]ID, 0, len(drop))
	for id := range drop {
		out = append(out, id)
	}
	return sortedIDs(out), next
}

// RecordMessage notes that sender sent an application message in epoch
// id, for the settled rule, and reports whether that is news. It records
// nothing for an epoch not retained or a sender not among its members.
func (g *Graph[S]) RecordMessage(id ID, sender Device) bool {
	n := g.nodes[id]
	if n == nil || !n.Retained {
		return false
	}
	if _, member := slices.BinarySearchFunc(n.Members, sender, Device.Compare); !member {
		return false
	}
	i, found := slices.BinarySearchFunc(n.Spoke, sender, Device.Compare)
	if found {
		return false
	}
	n.Spoke = slices.Insert(n.Spoke, i, sender)
	n.spokeNew = true
	return true
}

// stampSpoken sets Spoken to now on the epochs whose Spoke grew since it
// was last stamped.
func (g *Graph[S]) stampSpoken(now time.Time) {
	for _, n := range g.nodes {
		if n.spokeNew {
			n.Spoken, n.spokeNew = now, false
		}
	}
}

// lastMoveAbove returns when the latest move above n was seen: the
// newest Added or Spoken of the epochs above it, now for a message not
// stamped yet, zero if there is none (Policy.Linger counts from it).
func (g *Graph[S]) lastMoveAbove(n *Node[S], now time.Time) time.Time {
	var last time.Time
	for _, x := range g.subtree(n.ID)[1:] { // n itself first
		if x.spokeNew {
			return now
		}
		for _, t := range []time.Time{x.Added, x.Spoken} {
			if t.After(last) {
				last = t
			}
		}
	}
	return last
}

// settled reports whether every member of n has moved on from it: each
// has created an epoch above n or sent a message in one, or is absent
// from every head above n (removed on every live branch, so it has
// nothing left to send in n). For our own devices (own.ours), only what
// they did in epochs that are not tentative counts: a withdrawal takes
// them back to the base of our commit.
func (g *Graph[S]) settled(n *Node[S], headSet map[ID]bool, own ownView[S]) bool {
	// created and above for every member, and firm versions (outside
	// tentative epochs) for ours.
	var created, createdFirm []Device // a few: the creators above n
	var above, aboveFirm, heads, headsFirm []*Node[S]
	var walk func(id ID)
	walk = func(id ID) {
		for _, c := range g.children[id] {
			cn := g.nodes[c]
			if cn == nil {
				continue
			}
			firm := !own.tentative[c]
			created = append(created, cn.Creator)
			if firm {
				createdFirm = append(createdFirm, cn.Creator)
			}
			if len(cn.Spoke) > 0 {
				above = append(above, cn)
				if firm {
					aboveFirm = append(aboveFirm, cn)
				}
			}
			if headSet[c] {
				heads = append(heads, cn)
				if firm {
					headsFirm = append(headsFirm, cn)
				}
			}
			walk(c)
		}
	}
	walk(n.ID)
	// n.Members and each Spoke are ascending: one merge, a cursor per
	// epoch above, finds each member's messages, and the first member
	// that has not moved on ends it (in a large group most epochs are not
	// settled).
	all, firm := newNodeMerge(above, spoke[S]), newNodeMerge(aboveFirm, spoke[S])
	ours := newSortedMerge(own.ours)
	var gone func(Device) bool // own.past(n), asked for once, when needed
	for _, m := range n.Members {
		made, spoke, live := created, all, heads
		if ours.has(m) {
			made, spoke, live = createdFirm, firm, headsFirm
		}
		if slices.Contains(made, m) || spoke.has(m) {
			continue
		}
		if own.past != nil {
			if gone == nil {
				gone = own.past(n)
			}
			if gone(m) {
				continue
			}
		}
		if len(live) == 0 {
			return false
		}
		for _, h := range live {
			if _, found := slices.BinarySearchFunc(h.Members, m, Device.Compare); found {
				return false
			}
		}
	}
	return true
}

// subtree returns epoch id's node and those of every epoch above it.
func (g *Graph[S]) subtree(id ID) []*Node[S] {
	var out []*Node[S]
	queue := []ID{id}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		if n := g.nodes[x]; n != nil {
			out = append(out, n)
		}
		queue = append(queue, g.children[x]...)
	}
	return out
}

// sortedMerge finds, for devices asked in ascending order, whether any of
// some ascending lists holds each: a cursor per list, so that asking
// about every member of a large group costs one pass over each list, not
// a search or a hash per member.
type sortedMerge struct {
	lists [][]Device
	at    []int
}

func newSortedMerge(lists ...[]Device) *sortedMerge {
	return &sortedMerge{lists: lists, at: make([]int, len(lists))}
}

// newNodeMerge merges a list of each of the epochs: their senders
// (Node.Spoke), or our devices in them.
func newNodeMerge[S any](epochs []*Node[S], list func(*Node[S]) []Device) *sortedMerge {
	lists := make([][]Device, len(epochs))
	for i, n := range epochs {
		lists[i] = list(n)
	}
	return newSortedMerge(lists...)
}

func spoke[S any](n *Node[S]) []Device { return n.Spoke }

// has reports whether any of the lists holds m; m must not be below a
// device asked before.
func (s *sortedMerge) has(m Device) bool {
	found := false
	for i, list := range s.lists {
		at := s.at[i]
		for ; at < len(list); at++ {
			if c := list[at].Compare(m); c >= 0 {
				found = found || c == 0
				break
			}
		}
		s.at[i] = at
	}
	return found
}

// Drop forgets the states of the given epochs: destroy (if not nil) is
// called with each state so that the caller can zero its secrets, and the
// graph keeps only the metadata that base selection may still need. It
// refuses to drop a head or an unknown epoch and then drops nothing.
func (g *Graph[S]) Drop(ids []ID, destroy func(S)) error {
	heads := g.headSet()
	for _, id := range ids {
		n := g.nodes[id]
		switch {
		case n == nil:
			return fmt.Errorf("%w: %v", ErrUnknownEpoch, id)
		case heads[id]:
			return fmt.Errorf("%w: %v", ErrDropHead, id)
		}
	}
	var zero S
	for _, id := range ids {
		n := g.nodes[id]
		if !n.Retained {
			continue
		}
		if destroy != nil {
			destroy(n.State)
		}
		// Only retained epochs' members matter (retention's settled
		// rule, planning on the base).
		n.State, n.Members, n.Spoke, n.Echoed = zero, nil, nil, false
		n.Retained = false
	}
	g.prune()
	return nil
}

func (g *Graph[S]) headSet() map[ID]bool {
	set := map[ID]bool{}
	for _, h := range g.Heads() {
		set[h] = true
	}
	return set
}

// prune forgets the metadata of dropped epochs that no comparison between
// retained epochs can need: those below the last common ancestor of all
// retained epochs, and those with no retained descendant. Comparisons only
// look at the paths from the retained epochs down to where they meet. An
// epoch whose creating commit resolves a retained epoch is kept whatever
// its place: it is what keeps that epoch retired, and forgetting it would
// make the epoch a head again.
func (g *Graph[S]) prune() {
	var retained []ID
	for id, n := range g.nodes {
		if n.Retained {
			retained = append(retained, id)
		}
	}
	// below counts, for each node, the retained epochs it is an ancestor
	// of (or equal to).
	below := map[ID]int{}
	for _, id := range retained {
		for n := g.nodes[id]; n != nil; n = g.nodes[n.Parent] {
			below[n.ID]++
			if n.Parent == "" {
				break
			}
		}
	}
	var lca *Node[S]
	for id, c := range below {
		if c == len(retained) {
			// The highest such node; ties (chains that never meet) go to
			// the lower ID, so that the result does not depend on the
			// map's order.
			n := g.nodes[id]
			if lca == nil || n.Number > lca.Number || (n.Number == lca.Number && n.ID < lca.ID) {
				lca = n
			}
		}
	}
	var gone []ID
	for id, n := range g.nodes {
		if n.Retained || slices.ContainsFunc(n.Resolves, func(r ID) bool { x := g.nodes[r]; return x != nil && x.Retained }) {
			continue
		}
		if below[id] == 0 || (lca != nil && below[id] == len(retained) && n.Number < lca.Number) {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 {
		return
	}
	for _, id := range gone {
		delete(g.nodes, id)
	}
	g.relink()
}

// relink rebuilds the derived maps from the nodes.
func (g *Graph[S]) relink() {
	nodes := g.nodes
	g.nodes = make(map[ID]*Node[S], len(nodes))
	g.children = map[ID][]ID{}
	g.retiredBy = map[ID]ID{}
	// Insert in a fixed order so that retiredBy picks the same resolver
	// on every member (the oldest by number, then ID).
	ordered := make([]*Node[S], 0, len(nodes))
	for _, n := range nodes {
		ordered = append(ordered, n)
	}
	slices.SortFunc(ordered, func(a, b *Node[S]) int {
		if c := cmp.Compare(a.Number, b.Number); c != 0 {
			return c
		}
		return strings.Compare(string(a.ID), string(b.ID))
	})
	for _, n := range ordered {
		g.insert(n)
	}
	for _, c := range g.children {
		sortedIDs(c)
	}
}
