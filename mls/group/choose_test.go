package group

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// proposeAll has gs[from] send p and every other member receive it; it
// returns the proposal's ref.
func proposeAll(t *testing.T, gs []*Group, from int, p *message.Proposal) []byte {
	t.Helper()
	var msg, ref []byte
	var err error
	if p == nil {
		msg, ref, err = gs[from].ProposeUpdate(nil)
	} else {
		msg, ref, err = gs[from].Propose(p, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range gs {
		if i != from {
			mustHandle(t, g, msg)
		}
	}
	return ref
}

func TestCommitChosenProposals(t *testing.T) {
	gs := threeMembers(t, Config{})
	dave := newBundle(t, s1, "dave")
	// Carol updates, bob proposes adding dave and removing alice, alice
	// updates herself: four proposals cached by everyone.
	carolUpd := proposeAll(t, gs, 2, nil)
	addDave := proposeAll(t, gs, 1, AddProposal(&dave.KeyPackage))
	removeAlice := proposeAll(t, gs, 1, RemoveProposal(0))
	aliceUpd := proposeAll(t, gs, 0, nil)
	reinit := proposeAll(t, gs, 2, ReInitProposal([]byte("g2"), suite.X25519AES128GCMSHA256Ed25519, nil))
	if n := gs[0].PendingProposals(); n != 5 {
		t.Fatalf("%d proposals cached, want 5", n)
	}

	accepted := []struct {
		name    string
		refs    [][]byte
		joiners []*KeyPackageBundle
	}{
		{"one of several", [][]byte{addDave}, []*KeyPackageBundle{dave}},
		{"in the caller's order", [][]byte{addDave, carolUpd}, []*KeyPackageBundle{dave}},
		{"none", [][]byte{}, nil},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			pc, err := gs[0].Commit(CommitOptions{ProposalRefs: tc.refs})
			if err != nil {
				t.Fatal(err)
			}
			ac := parseAC(t, pc.Commit)
			got := ac.Content.Commit.Proposals
			if len(got) != len(tc.refs) {
				t.Fatalf("commit carries %d proposals, want %d", len(got), len(tc.refs))
			}
			for i, por := range got {
				if por.Type != message.ProposalOrRefReference || !bytes.Equal(por.Reference, tc.refs[i]) {
					t.Fatalf("proposal %d is not the chosen ref", i)
				}
			}
			next := []*Group{mustNext(t, gs[0], pc)}
			for _, g := range gs[1:] {
				next = append(next, mustHandle(t, g, pc.Commit).Next)
			}
			for _, kp := range tc.joiners {
				j, err := Join(pc.Welcome, kp, nil)
				if err != nil {
					t.Fatal(err)
				}
				next = append(next, j)
			}
			checkAgree(t, next)
			// Carol's key changes only if her Update was chosen.
			updated := !bytes.Equal(next[0].pub.tree.Leaf(2).EncryptionKey, gs[0].pub.tree.Leaf(2).EncryptionKey)
			chose := false
			for _, r := range tc.refs {
				chose = chose || bytes.Equal(r, carolUpd)
			}
			if updated != chose {
				t.Fatalf("carol's leaf updated %v, update chosen %v", updated, chose)
			}
		})
	}

	rejected := []struct {
		name string
		o    CommitOptions
		want []error
	}{
		{"unknown ref", CommitOptions{ProposalRefs: [][]byte{make([]byte, 32)}}, []error{ErrUnknownProposalRef}},
		{"same ref twice", CommitOptions{ProposalRefs: [][]byte{addDave, addDave}}, []error{ErrInvalidProposalList, ErrDuplicateAdd}},
		{"own update", CommitOptions{ProposalRefs: [][]byte{aliceUpd}}, []error{ErrInvalidProposalList, ErrCommitterUpdate}},
		{"removes the committer", CommitOptions{ProposalRefs: [][]byte{removeAlice}}, []error{ErrInvalidProposalList, ErrCommitterUpdate}},
		{"reinit with others", CommitOptions{ProposalRefs: [][]byte{reinit, addDave}}, []error{ErrInvalidProposalList}},
		{"reinit with a proposal by value", CommitOptions{ProposalRefs: [][]byte{reinit}, Proposals: []*message.Proposal{RemoveProposal(1)}}, []error{ErrInvalidProposalList}},
		{"with SkipPending", CommitOptions{ProposalRefs: [][]byte{addDave}, SkipPending: true}, []error{errConflictingChoice}},
	}
	for _, tc := range rejected {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := gs[0].MarshalBinary()
			_, err := gs[0].Commit(tc.o)
			for _, want := range tc.want {
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
			after, _ := gs[0].MarshalBinary()
			if !bytes.Equal(before, after) {
				t.Fatal("rejected commit changed the state")
			}
		})
	}

	// The default still commits what §12.2's SHOULDs pick from all five:
	// the Remove of alice is dropped (she commits), as are her own Update
	// and the ReInit (not alone).
	pc, err := gs[0].Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(parseAC(t, pc.Commit).Content.Commit.Proposals); n != 2 {
		t.Fatalf("default commit carries %d proposals, want 2", n)
	}
}

func mustNext(t *testing.T, g *Group, pc *PendingCommit) *Group {
	t.Helper()
	n, err := g.HandlePendingCommit(pc)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
