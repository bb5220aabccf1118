package grouptest

import (
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/mls/treemath"
)

// A built group is a real one: a member commits, another processes the
// commit, and a joiner validates the whole tree from the Welcome.
func TestBuild(t *testing.T) {
	for _, full := range []bool{true, false} {
		g, err := Build(suite.X25519AES128GCMSHA256Ed25519, 37, full)
		if err != nil {
			t.Fatal(err)
		}
		committer, err := g.Member(18, group.Config{})
		if err != nil {
			t.Fatal(err)
		}
		receiver, err := g.Member(36, group.Config{})
		if err != nil {
			t.Fatal(err)
		}
		joiner, err := newMember(committer.Public().Suite(), "joiner")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := committer.Commit(group.CommitOptions{Proposals: []*message.Proposal{group.AddProposal(&joiner.KeyPackage)}, ForcePath: true})
		if err != nil {
			t.Fatal(err)
		}
		r, err := receiver.Handle(pc.Commit)
		if err != nil {
			t.Fatalf("full=%v: process: %v", full, err)
		}
		j, err := group.Join(pc.Welcome, joiner, nil)
		if err != nil {
			t.Fatalf("full=%v: join: %v", full, err)
		}
		if string(j.EpochAuthenticator()) != string(r.Next.EpochAuthenticator()) {
			t.Fatalf("full=%v: joiner and receiver disagree", full)
		}
		// In a full tree the parent of leaves 0 and 1 is set (by member
		// 1's commit); in a sparse one it is blank.
		if tr := committer.Public().Tree(); tr.IsBlank(treemath.NodeIndex(1)) == full {
			t.Fatalf("full=%v: node 1 blank %v", full, tr.IsBlank(1))
		}
	}
}
