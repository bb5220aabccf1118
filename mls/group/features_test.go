package group

import (
	"bytes"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

const s1 = suite.X25519AES128GCMSHA256Ed25519

// threeMembers returns a group of alice, bob and carol at epoch 1.
func threeMembers(t testing.TB, cfg Config) []*Group {
	t.Helper()
	return threeMembersIn(t, s1, cfg)
}

// threeMembersIn is threeMembers in suite id.
func threeMembersIn(t testing.TB, id suite.ID, cfg Config) []*Group {
	t.Helper()
	alice, err := Create(newBundle(t, id, "alice"), []byte("group"), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bob, carol := newBundle(t, id, "bob"), newBundle(t, id, "carol")
	pc, err := alice.Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&bob.KeyPackage), AddProposal(&carol.KeyPackage)}, ForcePath: true})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := alice.HandlePendingCommit(pc)
	b, err := Join(pc.Welcome, bob, &JoinOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Join(pc.Welcome, carol, &JoinOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return []*Group{a, b, c}
}

// commitAll has gs[from] commit o and everyone follow.
func commitAll(t *testing.T, gs []*Group, from int, o CommitOptions) ([]*Group, *PendingCommit) {
	t.Helper()
	pc, err := gs[from].Commit(o)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*Group, len(gs))
	for i, g := range gs {
		if i == from {
			out[i], _ = g.HandlePendingCommit(pc)
			continue
		}
		out[i] = mustHandle(t, g, pc.Commit).Next
	}
	checkAgree(t, out)
	return out, pc
}

func TestJoinWithOutOfBandTree(t *testing.T) {
	gs := threeMembers(t, Config{})
	dave := newBundle(t, s1, "dave")
	pc, err := gs[0].Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&dave.KeyPackage)}, OmitRatchetTree: true})
	if err != nil {
		t.Fatal(err)
	}
	next, _ := gs[0].HandlePendingCommit(pc)
	if _, err := Join(pc.Welcome, dave, nil); err == nil {
		t.Fatal("joined without a tree")
	}
	d, err := Join(pc.Welcome, dave, &JoinOptions{RatchetTree: next.Public().Tree().RatchetTree()})
	if err != nil {
		t.Fatal(err)
	}
	checkAgree(t, []*Group{next, d})
}

func TestReInit(t *testing.T) {
	gs := threeMembers(t, Config{})
	// Bob proposes reinitialising into suite 3; Alice commits it.
	msg, _, err := gs[1].Propose(ReInitProposal([]byte("group v2"), suite.X25519ChaCha20Poly1305SHA256Ed25519, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustHandle(t, gs[0], msg)
	mustHandle(t, gs[2], msg)
	gs, _ = commitAll(t, gs, 0, CommitOptions{})
	if gs[0].Public().ReInit() == nil {
		t.Fatal("reinit not noted")
	}
	if _, err := gs[1].Protect([]byte("x"), nil); err == nil {
		t.Fatal("sent in a reinitialised group")
	}
	// Alice starts the new group; Bob and Carol join with fresh
	// KeyPackages in the new suite.
	newAlice := newBundle(t, suite.X25519ChaCha20Poly1305SHA256Ed25519, "alice")
	bob2 := newBundle(t, suite.X25519ChaCha20Poly1305SHA256Ed25519, "bob")
	carol2 := newBundle(t, suite.X25519ChaCha20Poly1305SHA256Ed25519, "carol")
	pc, err := gs[0].ReInit(newAlice, []*message.KeyPackage{&bob2.KeyPackage, &carol2.KeyPackage})
	if err != nil {
		t.Fatal(err)
	}
	for i, kp := range []*KeyPackageBundle{bob2, carol2} {
		store := NewPSKStore()
		store.AddResumptionFrom(gs[i+1])
		g, err := Join(pc.Welcome, kp, &JoinOptions{Config: Config{PSKs: store}})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.CheckReInit(gs[i+1]); err != nil {
			t.Fatal(err)
		}
		checkAgree(t, []*Group{pc.State(), g})
		if g.Epoch() != 1 || !bytes.Equal(g.GroupID(), []byte("group v2")) {
			t.Fatal("wrong new group")
		}
	}
	// Without the PSK the Welcome cannot be opened.
	if _, err := Join(pc.Welcome, bob2, nil); !errorsIs(err, ErrMissingPSK) {
		t.Fatalf("join without PSK: %v", err)
	}
}

func TestBranch(t *testing.T) {
	gs := threeMembers(t, Config{})
	bob := newBundleWithKey(t, "bob", gs[1].Private().signKey)
	me := newBundleWithKey(t, "alice", gs[0].Private().signKey)
	pc, err := gs[0].Branch([]byte("subgroup"), nil, me, []*message.KeyPackage{&bob.KeyPackage})
	if err != nil {
		t.Fatal(err)
	}
	store := NewPSKStore()
	store.AddResumptionFrom(gs[1])
	b, err := Join(pc.Welcome, bob, &JoinOptions{Config: Config{PSKs: store}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CheckBranch(gs[1]); err != nil {
		t.Fatal(err)
	}
	checkAgree(t, []*Group{pc.State(), b})
}

func newBundleWithKey(t testing.TB, name string, sigPriv *suite.SignaturePrivateKey) *KeyPackageBundle {
	kp, err := NewKeyPackage(message.BasicCredential([]byte(name)), sigPriv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func TestExternalSendersAndResync(t *testing.T) {
	gs := threeMembers(t, Config{HandshakeWireFormat: message.WireFormatPrivateMessage})
	s, _ := suite.Lookup(s1)
	extPriv, _ := s.GenerateSignatureKey()
	es := message.ExternalSenders{{SignatureKey: extPriv.Public().Bytes(), Credential: message.BasicCredential([]byte("server"))}}
	gce := GroupContextExtensionsProposal([]message.Extension{{Type: message.ExtensionExternalSenders, Data: codec.Marshal(es)}})
	gs, _ = commitAll(t, gs, 1, CommitOptions{Proposals: []*message.Proposal{gce}})

	// The external sender proposes removing carol and adding dave; bob
	// commits both by reference.
	dave := newBundle(t, s1, "dave")
	for _, p := range []*message.Proposal{RemoveProposal(2), AddProposal(&dave.KeyPackage)} {
		msg, err := ExternalProposal(extPriv, gs[0].GroupID(), gs[0].Epoch(), 0, false, p, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			mustHandle(t, g, msg)
		}
	}
	pc, err := gs[1].Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := mustHandle(t, gs[0], pc.Commit).Next
	b, _ := gs[1].HandlePendingCommit(pc)
	if r := mustHandle(t, gs[2], pc.Commit); !r.Removed {
		t.Fatal("carol not removed")
	}
	d, err := Join(pc.Welcome, dave, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkAgree(t, []*Group{a, b, d})

	// A new-member proposal: erin asks to be added.
	erin := newBundle(t, s1, "erin")
	msg, err := ExternalProposal(erin.SignatureKey, a.GroupID(), a.Epoch(), 0, true, AddProposal(&erin.KeyPackage), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []*Group{a, b, d} {
		mustHandle(t, g, msg)
	}
	all, pc := commitAll(t, []*Group{a, b, d}, 0, CommitOptions{})
	e, err := Join(pc.Welcome, erin, nil)
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, e)
	checkAgree(t, all)

	// Dave lost his state and resyncs by external commit.
	gi, err := all[0].GroupInfo(GroupInfoOptions{ExternalPub: true})
	if err != nil {
		t.Fatal(err)
	}
	xc, err := JoinExternal(gi, newBundle(t, s1, "dave"), &ExternalJoinOptions{RatchetTree: all[0].Public().Tree().RatchetTree(), Resync: true, ResyncLeaf: all[2].LeafIndex()})
	if err != nil {
		t.Fatal(err)
	}
	var after []*Group
	for i, g := range all {
		r := mustHandle(t, g, xc.Commit)
		if i == 2 {
			if !r.Removed {
				t.Fatal("old dave not removed")
			}
			continue
		}
		after = append(after, r.Next)
	}
	after = append(after, xc.State())
	checkAgree(t, after)
}

func TestEncodingRoundTrip(t *testing.T) {
	gs := threeMembers(t, Config{HandshakeWireFormat: message.WireFormatPrivateMessage})
	msg, _, err := gs[2].ProposeUpdate(nil)
	if err != nil {
		t.Fatal(err)
	}
	mustHandle(t, gs[1], msg)
	for _, g := range gs {
		data, err := g.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		h, err := UnmarshalGroup(data, g.Config())
		if err != nil {
			t.Fatal(err)
		}
		again, err := h.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(again) != len(data) || h.Epoch() != g.Epoch() || !bytes.Equal(h.EpochAuthenticator(), g.EpochAuthenticator()) {
			t.Fatal("round trip changed the state")
		}
		pub, err := g.Public().MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := UnmarshalPublic(pub); err != nil {
			t.Fatal(err)
		}
	}
	// The decoded states carry on: bob (decoded) commits carol's
	// update; decoded alice and carol follow.
	var dec []*Group
	for _, g := range gs {
		data, _ := g.MarshalBinary()
		h, err := UnmarshalGroup(data, g.Config())
		if err != nil {
			t.Fatal(err)
		}
		dec = append(dec, h)
	}
	mustHandle(t, dec[0], msg)
	commitAll(t, dec, 1, CommitOptions{})
}
