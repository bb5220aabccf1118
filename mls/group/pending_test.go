package group

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
)

// §12.4: a member that has observed a valid proposal in the epoch must
// commit before it sends application data. Invalid proposals do not
// count, and a new epoch starts afresh.
func TestProtectWithPendingProposals(t *testing.T) {
	badKP := *newBundle(t, s1, "mallory")
	badKP.KeyPackage.Signature = bytes.Clone(badKP.KeyPackage.Signature)
	badKP.KeyPackage.Signature[0] ^= 1
	cases := []struct {
		name string
		// propose has gs[from] send a proposal that everyone receives.
		from    int
		p       func(t *testing.T) *message.Proposal
		blocked bool
	}{
		{"none", -1, nil, false},
		{"received remove", 2, func(*testing.T) *message.Proposal { return RemoveProposal(0) }, true},
		{"received add", 2, func(t *testing.T) *message.Proposal { return AddProposal(&newBundle(t, s1, "dave").KeyPackage) }, true},
		{"received update", 2, nil, true},
		{"own update", 1, nil, true},
		{"own remove", 1, func(*testing.T) *message.Proposal { return RemoveProposal(2) }, true},
		{"remove of a blank leaf", 2, func(*testing.T) *message.Proposal { return RemoveProposal(9) }, false},
		{"add of a bad key package", 2, func(*testing.T) *message.Proposal { return AddProposal(&badKP.KeyPackage) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gs := threeMembers(t, Config{})
			if tc.from >= 0 {
				var p *message.Proposal
				if tc.p != nil {
					p = tc.p(t)
				}
				proposeAll(t, gs, tc.from, p)
			}
			bob := gs[1]
			before, _ := bob.MarshalBinary()
			for range 2 { // the second time from the kept verdicts
				_, err := bob.Protect([]byte("hello"), nil)
				if tc.blocked != errors.Is(err, ErrPendingProposals) || (!tc.blocked && err != nil) {
					t.Fatalf("protect: %v, blocked %v", err, tc.blocked)
				}
			}
			if !tc.blocked {
				return
			}
			after, _ := bob.MarshalBinary()
			if !bytes.Equal(before, after) {
				t.Fatal("refused Protect changed the state")
			}
			// Once a commit (here one that covers none of the proposals)
			// starts the next epoch, bob may send again.
			next, _ := commitAll(t, gs, 0, CommitOptions{ProposalRefs: [][]byte{}})
			msg, err := next[1].Protect([]byte("hello"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if r := mustHandle(t, next[2], msg); !bytes.Equal(r.ApplicationData, []byte("hello")) {
				t.Fatal("wrong plaintext")
			}
		})
	}
}
