package group

import (
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
)

// fuzzFixture is a small group with a few real messages as seeds: alice
// (the receiver), a commit from bob with a path, and a Welcome for dave.
type fuzzFixture struct {
	alice   []byte // encoded state
	cfg     Config
	commits [][]byte
	welcome []byte
	dave    *KeyPackageBundle
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	gs := threeMembers(f, Config{})
	fx := &fuzzFixture{cfg: Config{}, dave: newBundle(f, s1, "dave")}
	fx.alice, _ = gs[0].MarshalBinary()
	for _, o := range []CommitOptions{{ForcePath: true}, {Proposals: []*message.Proposal{AddProposal(&fx.dave.KeyPackage)}}, {WireFormat: message.WireFormatPrivateMessage, ForcePath: true}} {
		pc, err := gs[1].Commit(o)
		if err != nil {
			f.Fatal(err)
		}
		fx.commits = append(fx.commits, pc.Commit)
		if pc.Welcome != nil {
			fx.welcome = pc.Welcome
		}
	}
	return fx
}

func FuzzHandleCommit(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, c := range fx.commits {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := UnmarshalGroup(fx.alice, fx.cfg)
		if err != nil {
			t.Fatal(err)
		}
		before := g.EpochAuthenticator()
		r, err := g.Handle(data)
		if err == nil && r.Next != nil && r.Next.Epoch() != g.Epoch()+1 {
			t.Fatal("commit did not advance one epoch")
		}
		if string(g.EpochAuthenticator()) != string(before) {
			t.Fatal("receiver changed")
		}
	})
}

func FuzzJoin(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.welcome)
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := Join(data, fx.dave, nil)
		if err == nil && g.LeafIndex() != 3 {
			t.Fatal("joined at the wrong leaf")
		}
	})
}

func FuzzUnmarshalGroup(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.alice)
	// A state that keeps past epochs, one of whose senders has left.
	cfg := Config{PastEpochs: 2, HandshakeWireFormat: message.WireFormatPrivateMessage}
	gs := threeMembers(f, cfg)
	for _, o := range []CommitOptions{{ForcePath: true}, {Proposals: []*message.Proposal{RemoveProposal(2)}}} {
		pc, err := gs[0].Commit(o)
		if err != nil {
			f.Fatal(err)
		}
		gs[0], _ = gs[0].HandlePendingCommit(pc)
	}
	withPast, err := gs[0].MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withPast)
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := UnmarshalGroup(data, cfg)
		if err != nil {
			return
		}
		if _, err := g.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
	})
}
