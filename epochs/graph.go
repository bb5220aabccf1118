package epochs

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Node is one epoch as a member knows it. S is the per-epoch state the
// caller keeps (the group layer's state value); the graph never looks
// inside it.
type Node[S any] struct {
	Identity
	// Parent is the epoch the creating commit was made on; empty for an
	// epoch the member did not see being made (group creation, Welcome).
	Parent ID
	// ConfirmationTag is the confirmation tag of the commit that created
	// the epoch; base selection orders sibling branches by it.
	ConfirmationTag []byte
	// Members are the group's devices in this epoch; retention asks
	// whether each of them has moved on.
	Members []Device
	// Spoke are the members that sent an application message in this
	// epoch (ascending, unique, a subset of Members): like a commit on
	// it, a message shows which branch its sender chose, and retention's
	// settled rule counts both. Kept only while the epoch is retained.
	Spoke []Device
	// Spoken is when Spoke last grew, on the caller's clock (a Member
	// stamps it in Retain, the Graph's own RecordMessage having no clock;
	// spokeNew marks a growth not stamped yet, which counts as now).
	// Retention's settled rule waits Policy.Linger from the latest move
	// above an epoch, and a first message is a move. Kept only while the
	// epoch is retained.
	Spoken   time.Time
	spokeNew bool
	// Echoed is set on an epoch made by a commit of the Member's own once
	// the commit's event came back from the homeserver and the room
	// accepted it (Member.Confirm): it can no longer be withdrawn, so
	// retention's settled rule may count it as it counts another member's
	// commit. Kept only while the epoch is retained.
	Echoed bool
	// Resolves are the heads that the creating commit names in
	// dmls_resolves; adding the node retires them.
	Resolves []ID
	// Added is when this member learned the epoch, on the caller's clock:
	// when it made, processed or joined it. An epoch known only from
	// history (Learn) has none until it is held.
	Added time.Time
	// Superseded is when the epoch stopped being a head: the Added time of
	// its first child or of the first commit that resolved it. Zero while
	// it is a head. Retention by age counts from here, because messages
	// encrypted in an epoch keep arriving for a while after it is left.
	Superseded time.Time
	// Retained is false once the epoch was dropped: its State is gone and
	// only this metadata stays, while base selection may still need it.
	Retained bool
	State    S
}

// Graph is one member's view of a group's epochs: parent links, heads and
// forks. It is mutable and not safe for concurrent use; the caller
// serialises work per room (DESIGN §3).
type Graph[S any] struct {
	nodes    map[ID]*Node[S]
	children map[ID][]ID
	// retiredBy maps a resolved epoch to the first epoch whose commit
	// resolved it. It may name epochs not yet seen, so that a branch that
	// arrives after its resolution does not reopen the fork.
	retiredBy map[ID]ID
}

// New returns an empty graph.
func New[S any]() *Graph[S] {
	return &Graph[S]{nodes: map[ID]*Node[S]{}, children: map[ID][]ID{}, retiredBy: map[ID]ID{}}
}

// Len returns the number of epochs the graph knows, dropped ones included.
func (g *Graph[S]) Len() int { return len(g.nodes) }

// Add records a new epoch made by a commit that this member processed.
// Unless it is a root (no Parent), its parent must be retained, because
// only a retained epoch's state can process the commit, and its number
// must be the parent's plus one. The node is stored as retained and not
// yet superseded; the caller's Retained and Superseded fields are ignored.
// Slices are copied.
func (g *Graph[S]) Add(n Node[S]) error {
	if n.Parent != "" {
		if p := g.nodes[n.Parent]; p == nil || !p.Retained {
			return fmt.Errorf("%w: %v", ErrParentNotRetained, n.Parent)
		}
	}
	return g.add(n, true)
}

// Join records an epoch this member entered through a Welcome. Its Parent
// (the epoch the adding commit was made on, if the caller knows it) may be
// unknown: it is kept so that base selection compares this branch with
// others at the right place.
func (g *Graph[S]) Join(n Node[S]) error { return g.add(n, true) }

// Learn records an epoch's metadata without a state, as learned by
// following commit_event links back from an epoch this member joined at
// (DESIGN §5). It lets a member that joined during a fork compare
// branches exactly as the members that saw them being made.
func (g *Graph[S]) Learn(n Node[S]) error {
	var zero S
	n.State, n.Added = zero, time.Time{}
	return g.add(n, false)
}

func (g *Graph[S]) add(n Node[S], retained bool) error {
	if err := n.ID.check(); err != nil {
		return err
	}
	if n.Parent != "" {
		if err := n.Parent.check(); err != nil {
			return err
		}
	}
	if _, ok := g.nodes[n.ID]; ok {
		return fmt.Errorf("%w: %v", ErrDuplicateEpoch, n.ID)
	}
	parent := g.nodes[n.Parent]
	if n.Parent != "" && (n.Parent == n.ID || n.Number == 0) {
		return fmt.Errorf("%w: epoch %d with parent", ErrEpochNumber, n.Number)
	}
	if parent != nil && n.Number != parent.Number+1 {
		return fmt.Errorf("%w: %d on %d", ErrEpochNumber, n.Number, parent.Number)
	}
	for _, c := range g.children[n.ID] {
		if g.nodes[c].Number != n.Number+1 {
			return fmt.Errorf("%w: child %d on %d", ErrEpochNumber, g.nodes[c].Number, n.Number)
		}
	}
	stored := n
	stored.ConfirmationTag = slices.Clone(n.ConfirmationTag)
	stored.Members = sortedDevices(n.Members)
	stored.Spoke = sortedDevices(n.Spoke)
	stored.Resolves = slices.Clone(n.Resolves)
	stored.Retained = retained
	stored.Superseded = time.Time{}
	g.insert(&stored)
	if parent != nil && parent.Superseded.IsZero() {
		parent.Superseded = n.Added
	}
	for _, r := range stored.Resolves {
		if x := g.nodes[r]; x != nil && x.Superseded.IsZero() && r != n.ID {
			x.Superseded = n.Added
		}
	}
	// An epoch that already has children, or whose resolution arrived
	// first, is superseded on arrival.
	if _, ok := g.retiredBy[n.ID]; ok || len(g.children[n.ID]) > 0 {
		stored.Superseded = n.Added
	}
	return nil
}

// insert links a node into the maps; Add and decoding share it.
func (g *Graph[S]) insert(n *Node[S]) {
	g.nodes[n.ID] = n
	if n.Parent != "" {
		g.children[n.Parent] = append(g.children[n.Parent], n.ID)
	}
	for _, r := range n.Resolves {
		if _, ok := g.retiredBy[r]; !ok && r != n.ID {
			g.retiredBy[r] = n.ID
		}
	}
}

// Node returns a copy of the epoch's node. Its slices are shared with the
// graph; do not modify them.
func (g *Graph[S]) Node(id ID) (Node[S], bool) {
	n := g.nodes[id]
	if n == nil {
		return Node[S]{}, false
	}
	return *n, true
}

// Children returns the epochs known to have been made on id, in ID
// order; id itself need not be known (the children of a missing parent
// name it). A member that follows MissingHistory fetches a missing
// epoch's commit through them: each child's commit event links to it.
func (g *Graph[S]) Children(id ID) []ID {
	return sortedIDs(slices.Clone(g.children[id]))
}

// State returns a retained epoch's state, for processing a commit made on
// it or decrypting an application message sent in it.
func (g *Graph[S]) State(id ID) (S, bool) {
	n := g.nodes[id]
	if n == nil || !n.Retained {
		var zero S
		return zero, false
	}
	return n.State, true
}

// Hold gives a known epoch that holds no state (learned, or dropped) the
// state s and makes it retained: for a member that joins, by Welcome, an
// epoch it only knew of, or that processes the commit that made an epoch
// it had learned. The recorded metadata stays; members are the group's
// devices in the epoch, from the state. An epoch learned without a time
// takes added as the time it arrived, for retention by age.
func (g *Graph[S]) Hold(id ID, members []Device, s S, added time.Time) error {
	n := g.nodes[id]
	switch {
	case n == nil:
		return fmt.Errorf("%w: %v", ErrUnknownEpoch, id)
	case n.Retained:
		return fmt.Errorf("%w: %v is retained", ErrDuplicateEpoch, id)
	}
	n.Members = sortedDevices(members)
	n.State = s
	n.Retained = true
	if n.Added.IsZero() {
		n.Added = added
		if p := g.nodes[n.Parent]; p != nil && p.Superseded.IsZero() {
			p.Superseded = added
		}
		if _, retired := g.retiredBy[id]; (retired || len(g.children[id]) > 0) && n.Superseded.IsZero() {
			n.Superseded = added
		}
	}
	return nil
}

// SetState replaces a retained epoch's state, for a caller whose state
// changed in place of the epoch (a ratchet advanced, a PPRF punctured).
func (g *Graph[S]) SetState(id ID, s S) error {
	n := g.nodes[id]
	if n == nil || !n.Retained {
		return fmt.Errorf("%w: %v", ErrParentNotRetained, id)
	}
	n.State = s
	return nil
}

// Find returns the known epochs with an MSC2883 name, in ID order. More
// than one means the creator committed twice on one epoch.
func (g *Graph[S]) Find(p ResolvesPair) []ID {
	var out []ID
	for id, n := range g.nodes {
		if n.Number == p.Number && n.Creator == p.Creator {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Retired reports whether a commit named the epoch in dmls_resolves, and
// which one did first.
func (g *Graph[S]) Retired(id ID) (by ID, ok bool) {
	by, ok = g.retiredBy[id]
	return by, ok
}

// isHead: retained, no children, not retired. Retention never drops
// a head, so a head is always retained.
func (g *Graph[S]) isHead(id ID) bool {
	n := g.nodes[id]
	if n == nil || !n.Retained || len(g.children[id]) > 0 {
		return false
	}
	_, retired := g.retiredBy[id]
	return !retired
}

// Heads returns the epochs that further commits build on, best base first
// (see Compare). If every childless epoch was named by some resolution,
// which only hostile commits can cause, the childless epochs are the heads,
// so that a member is never left with nothing to build on.
func (g *Graph[S]) Heads() []ID {
	var heads, childless []ID
	for id, n := range g.nodes {
		if !n.Retained || len(g.children[id]) > 0 {
			continue
		}
		childless = append(childless, id)
		if g.isHead(id) {
			heads = append(heads, id)
		}
	}
	if len(heads) == 0 {
		heads = childless
	}
	slices.SortFunc(heads, func(a, b ID) int { return g.Compare(b, a) })
	return heads
}

// Forked reports whether there is more than one head.
func (g *Graph[S]) Forked() bool { return len(g.Heads()) > 1 }

// ResolvingRun returns how many commits in a row that resolved a fork
// lead to the base: the base's own commit, its parent's, and so on,
// counting while each named other heads. The committer rule backs off by
// it (package doc, "Committer"). An epoch the member did not see made (no
// parent known) ends the run.
func (g *Graph[S]) ResolvingRun() int {
	base, err := g.Base()
	if err != nil {
		return 0
	}
	run := 0
	for n := g.nodes[base]; n != nil && len(n.Resolves) > 0; n = g.nodes[n.Parent] {
		run++
	}
	return run
}

// Above reports whether x is a strict descendant of y: y is on x's chain of
// parents. It follows recorded parent links, so it also works when the
// nodes between them were dropped but their metadata remains.
func (g *Graph[S]) Above(x, y ID) bool {
	n := g.nodes[x]
	for n != nil && n.Parent != "" {
		if n.Parent == y {
			return true
		}
		n = g.nodes[n.Parent]
	}
	return false
}

// chain returns the known ancestry of id, from the oldest known ancestor
// down to id itself.
func (g *Graph[S]) chain(id ID) []*Node[S] {
	var c []*Node[S]
	for n := g.nodes[id]; n != nil; n = g.nodes[n.Parent] {
		c = append(c, n)
		if n.Parent == "" {
			break
		}
	}
	slices.Reverse(c)
	return c
}

// MissingHistory returns the epochs whose commits a member should fetch
// and Observe (following commit_event links, DESIGN §5) so that it orders
// its retained epochs as the other members do: when the known histories
// of the retained epochs do not all meet, the missing parents of their
// oldest known epochs, in ID order. It returns nil when they meet, so a
// member that follows it fetches only what a comparison needs, and stops
// when the graph holds one branch.
func (g *Graph[S]) MissingHistory() []ID {
	roots := map[ID]*Node[S]{}
	for id, n := range g.nodes {
		if n.Retained {
			if c := g.chain(id); len(c) > 0 {
				roots[c[0].ID] = c[0]
			}
		}
	}
	if len(roots) < 2 {
		return nil
	}
	parents := map[ID]bool{}
	for _, r := range roots {
		parents[r.Parent] = true
	}
	if len(parents) == 1 && !parents[""] {
		return nil // children of one missing parent meet there
	}
	var out []ID
	for p := range parents {
		if p != "" {
			out = append(out, p)
		}
	}
	return sortedIDs(out)
}

// FirstDifference returns the first differing commits on the branches
// leading to a and b: the children of their last common ancestor on the
// way to each. ok is false if one is an ancestor of the other (or they are
// equal), or if their known histories do not meet.
func (g *Graph[S]) FirstDifference(a, b ID) (ca, cb ID, ok bool) {
	x, y := g.chain(a), g.chain(b)
	if len(x) == 0 || len(y) == 0 {
		return "", "", false
	}
	// Two chains either share their oldest node or meet nowhere, except
	// when both start at children of the same missing parent.
	if x[0].ID != y[0].ID {
		if x[0].Parent != "" && x[0].Parent == y[0].Parent {
			return x[0].ID, y[0].ID, true
		}
		return "", "", false
	}
	for i := 1; i < len(x) && i < len(y); i++ {
		if x[i].ID != y[i].ID {
			return x[i].ID, y[i].ID, true
		}
	}
	return "", "", false
}

// sortedDevices returns a sorted copy of ds without repeats.
func sortedDevices(ds []Device) []Device {
	out := slices.Clone(ds)
	slices.SortFunc(out, Device.Compare)
	return slices.Compact(out)
}

// sortedIDs returns ids sorted bytewise, for deterministic output.
func sortedIDs(ids []ID) []ID {
	slices.SortFunc(ids, func(a, b ID) int { return strings.Compare(string(a), string(b)) })
	return ids
}
