package epochs

import (
	"fmt"
	"slices"
	"time"
)

// Remove forgets the epoch id and every epoch above it (its descendants,
// retained or known only as metadata) as if they had never been made,
// and returns them, id first. destroy, if not nil, is called with the
// state of each retained one so that the caller can zero its secrets.
// Epochs that are heads again afterwards (id's parent, or heads that a
// removed commit resolved) are no longer superseded.
//
// Unlike Drop, which keeps what base selection may need, Remove leaves
// no trace: it exists for a commit of our own that the room refused
// (Member.Withdraw), which no other member holds.
func (g *Graph[S]) Remove(id ID, destroy func(ID, S)) ([]ID, error) {
	if g.nodes[id] == nil {
		return nil, fmt.Errorf("%w: %v", ErrUnknownEpoch, id)
	}
	gone := []ID{id}
	for i := 0; i < len(gone); i++ {
		gone = append(gone, g.children[gone[i]]...)
	}
	for _, x := range gone {
		n := g.nodes[x]
		if n.Retained && destroy != nil {
			destroy(x, n.State)
		}
		delete(g.nodes, x)
	}
	g.relink()
	for x, n := range g.nodes {
		if g.isHead(x) {
			n.Superseded = time.Time{}
		}
	}
	return gone, nil
}

// Effect returns what the commit that made epoch id, on its retained
// parent, did to the group's devices: the CommitEffect that ApplyChecked
// gives its check when a commit arrives. Withdraw's caller checks our own
// commits with it, exactly as the other members check them.
func (m *Member) Effect(id ID) (CommitEffect, error) {
	n := m.graph.nodes[id]
	if n == nil || !n.Retained {
		return CommitEffect{}, fmt.Errorf("%w: %v", ErrUnknownEpoch, id)
	}
	p := m.graph.nodes[n.Parent]
	if n.Parent == "" || p == nil || !p.Retained {
		return CommitEffect{}, fmt.Errorf("%w: %v", ErrParentNotRetained, n.Parent)
	}
	return m.effect(n, p), nil
}

// effect is what the commit that made n did on its parent p, both
// retained.
func (m *Member) effect(n, p *Node[*EpochState]) CommitEffect {
	return CommitEffect{Added: minus(n.Members, p.Members), Removed: minus(p.Members, n.Members),
		After: sortedDevices(n.Members), Resolving: len(n.Resolves) > 0}
}

// Withdraw takes back epoch id, made by a commit of ours that the room
// refused: checked when its event came back, as every other member checks
// it, it failed the membership rules (package doc, "Membership
// authority"), so no other member applied it. Typically our device
// committed before it had seen a leave that its homeserver had already
// placed before the commit's event. Keeping the epoch would split the
// room for good: the others refuse every commit built on it, and we would
// never learn that they did.
//
// The epoch and every epoch above it are forgotten (Graph.Remove) and
// their states zeroed and deleted at the next Flush; the commit's hash
// stays seen, so its event given again is a duplicate, and the removed
// epochs count as refused (Refused), so that a Welcome into one is refused
// and the caller can tell that a message of ours sent in one reached no
// one else (and send it again). The parent must be retained: it is a head
// again, and the committer rule builds on it as if the commit had never
// been made. It returns the removed epochs.
func (m *Member) Withdraw(id ID) ([]ID, error) {
	if _, err := m.Effect(id); err != nil {
		return nil, err
	}
	if m.graph.nodes[id].Echoed {
		return nil, fmt.Errorf("%w: %v", ErrEchoed, id)
	}
	parent := m.graph.nodes[id].Parent
	gone, err := m.remove(id)
	if err != nil {
		return nil, err
	}
	// Kept, like seen, while the parent is retained.
	for _, x := range gone {
		m.refused[x] = parent
	}
	return gone, nil
}

// Confirm records that the event of our own commit that made epoch id came
// back from the homeserver and the room accepted it, checked as every
// other member checks it: it will not be withdrawn (Withdraw refuses it
// from now on), so retention's settled rule counts it as it counts
// another member's commit (Member.pastForGood). It reports whether that
// is news; it records nothing for an epoch not retained or not made by
// one of our devices.
func (m *Member) Confirm(id ID) bool {
	n := m.graph.nodes[id]
	if n == nil || !n.Retained || n.Echoed || !slices.Contains(m.Ours(), n.Creator) {
		return false
	}
	n.Echoed = true
	return true
}

// Refused reports whether the commit that makes epoch id was refused
// here, or withdrawn (Withdraw), while the epoch it was made on is still
// retained.
func (m *Member) Refused(id ID) bool {
	_, ok := m.refused[id]
	return ok
}

// remove forgets epoch id and every epoch above it (Graph.Remove), zeroes
// their states and records the stored ones for the next Flush.
func (m *Member) remove(id ID) ([]ID, error) {
	var stored []ID
	gone, err := m.graph.Remove(id, func(x ID, st *EpochState) {
		if st.stored {
			stored = append(stored, x)
		}
		st.wipe()
	})
	if err != nil {
		return nil, err
	}
	m.dropped = append(m.dropped, stored...)
	m.pruneCommits()
	return gone, nil
}

// descendsFromRefused reports whether epoch id, or an epoch it descends
// from as far as this member knows (graph parents, then the bases that
// observed commit events name), was refused or withdrawn. A withdrawn
// commit's Welcome may name an epoch two commits above the refused one;
// the commits between never apply, but their events tell the way down.
func (m *Member) descendsFromRefused(id ID) bool {
	for steps := len(m.graph.nodes) + len(m.known) + 1; id != "" && steps > 0; steps-- {
		if _, ok := m.refused[id]; ok {
			return true
		}
		if n := m.graph.nodes[id]; n != nil {
			id = n.Parent
		} else if c, ok := m.known[id]; ok {
			id = c.Base
		} else {
			return false
		}
	}
	return false
}

// dropRefusedBranches removes every epoch of the graph that is refused or
// descends from a refused one, with everything above it: a retained one
// came by a Welcome before we knew where it came from, and the metadata
// learned on the way down would keep the base from being a head again.
func (m *Member) dropRefusedBranches() error {
	var dead []ID
	for id := range m.graph.nodes {
		if m.descendsFromRefused(id) {
			dead = append(dead, id)
		}
	}
	for _, id := range sortedIDs(dead) {
		if _, ok := m.graph.nodes[id]; !ok {
			continue // above one removed already
		}
		if _, err := m.remove(id); err != nil {
			return err
		}
	}
	return nil
}
