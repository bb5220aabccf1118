package group

import (
	"bytes"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func TestSmallGroup(t *testing.T) {
	for _, wf := range []message.WireFormat{message.WireFormatPublicMessage, message.WireFormatPrivateMessage} {
		cfg := Config{HandshakeWireFormat: wf}
		id := suite.X25519AES128GCMSHA256Ed25519
		alice, err := Create(newBundle(t, id, "alice"), []byte("group"), nil, cfg)
		if err != nil {
			t.Fatal(err)
		}
		bob, carol := newBundle(t, id, "bob"), newBundle(t, id, "carol")
		pc, err := alice.Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&bob.KeyPackage), AddProposal(&carol.KeyPackage)}})
		if err != nil {
			t.Fatal(err)
		}
		a1, err := alice.HandlePendingCommit(pc)
		if err != nil {
			t.Fatal(err)
		}
		b1, err := Join(pc.Welcome, bob, &JoinOptions{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		c1, err := Join(pc.Welcome, carol, &JoinOptions{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		checkAgree(t, []*Group{a1, b1, c1})

		// Bob commits with a path; Alice and Carol follow.
		pc, err = b1.Commit(CommitOptions{ForcePath: true})
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := b1.HandlePendingCommit(pc)
		a2 := mustHandle(t, a1, pc.Commit).Next
		c2 := mustHandle(t, c1, pc.Commit).Next
		checkAgree(t, []*Group{a2, b2, c2})
		if a1.Epoch() != 1 {
			t.Fatal("old state changed")
		}

		// Application messages.
		for _, from := range []*Group{a2, b2, c2} {
			ct, err := from.Protect([]byte("hello"), []byte("ad"))
			if err != nil {
				t.Fatal(err)
			}
			for _, to := range []*Group{a2, b2, c2} {
				if to == from {
					continue
				}
				r := mustHandle(t, to, ct)
				if !bytes.Equal(r.ApplicationData, []byte("hello")) || !bytes.Equal(r.AuthenticatedData, []byte("ad")) || r.Sender.LeafIndex != from.LeafIndex() {
					t.Fatalf("bad application message %+v", r)
				}
			}
		}

		// Carol proposes an update, Alice removes nobody but commits it.
		msg, _, err := c2.ProposeUpdate(nil)
		if err != nil {
			t.Fatal(err)
		}
		mustHandle(t, a2, msg)
		mustHandle(t, b2, msg)
		pc, err = a2.Commit(CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a3, _ := a2.HandlePendingCommit(pc)
		b3 := mustHandle(t, b2, pc.Commit).Next
		c3 := mustHandle(t, c2, pc.Commit).Next
		checkAgree(t, []*Group{a3, b3, c3})

		// Bob removes Carol.
		pc, err = b3.Commit(CommitOptions{Proposals: []*message.Proposal{RemoveProposal(c3.LeafIndex())}})
		if err != nil {
			t.Fatal(err)
		}
		b4, _ := b3.HandlePendingCommit(pc)
		a4 := mustHandle(t, a3, pc.Commit).Next
		r := mustHandle(t, c3, pc.Commit)
		if !r.Removed {
			t.Fatal("carol not told she was removed")
		}
		checkAgree(t, []*Group{a4, b4})
	}
}
