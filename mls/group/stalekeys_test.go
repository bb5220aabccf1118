package group

import (
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
)

// TestStoredStateAfterBlankingCommit checks that a member whose path a
// Remove or Update blanked holds no key for the blanked nodes afterwards,
// so that its stored state passes UnmarshalGroup's key check.
func TestStoredStateAfterBlankingCommit(t *testing.T) {
	gs := threeMembers(t, Config{})
	dave := newBundle(t, s1, "dave")
	gs, pc := commitAll(t, gs, 0, CommitOptions{Proposals: []*message.Proposal{AddProposal(&dave.KeyPackage)}})
	d, err := Join(pc.Welcome, dave, nil)
	if err != nil {
		t.Fatal(err)
	}
	gs = append(gs, d)
	// Dave's path gives carol the key of their common parent, which a
	// Remove of dave and then an Update of carol's sibling blank.
	gs, _ = commitAll(t, gs, 3, CommitOptions{ForcePath: true})
	checkStored := func(gs []*Group) {
		t.Helper()
		for _, g := range gs {
			data, err := g.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := UnmarshalGroup(data, g.Config()); err != nil {
				t.Fatalf("member %d: %v", g.LeafIndex(), err)
			}
		}
	}
	checkStored(gs)
	gs, _ = commitAll(t, gs[:3], 1, CommitOptions{Proposals: []*message.Proposal{RemoveProposal(3)}})
	checkStored(gs)

	eve := newBundle(t, s1, "eve")
	gs, pc = commitAll(t, gs, 0, CommitOptions{Proposals: []*message.Proposal{AddProposal(&eve.KeyPackage)}})
	e, err := Join(pc.Welcome, eve, nil)
	if err != nil {
		t.Fatal(err)
	}
	gs = append(gs, e)
	gs, _ = commitAll(t, gs, 2, CommitOptions{ForcePath: true})
	msg, _, err := gs[3].ProposeUpdate(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range gs {
		if i != 3 {
			mustHandle(t, g, msg)
		}
	}
	gs, _ = commitAll(t, gs, 0, CommitOptions{})
	checkStored(gs)
}
