package group

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

const s3 = suite.X25519ChaCha20Poly1305SHA256Ed25519

// reinitialised returns alice, bob and carol after a commit of a ReInit
// into suite 3.
func reinitialised(t *testing.T) []*Group {
	t.Helper()
	gs := threeMembers(t, Config{})
	proposeAll(t, gs, 1, ReInitProposal([]byte("group v2"), s3, nil))
	gs, _ = commitAll(t, gs, 0, CommitOptions{})
	return gs
}

// joinWith joins the Welcome of pc as kp, with the resumption PSK of old.
func joinWith(t *testing.T, pc *PendingCommit, kp *KeyPackageBundle, old *Group, cfg Config) *Group {
	t.Helper()
	cfg.PSKs = NewPSKStore()
	cfg.PSKs.AddResumptionFrom(old)
	g, err := Join(pc.Welcome, kp, &JoinOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// The new group's members must be the old group's (reinit) or drawn from
// them (branch), by the identity of their credentials: they all bring
// fresh KeyPackages, so signature keys differ.
func TestSuccessorMembers(t *testing.T) {
	prefix := func(c *message.Credential) []byte { return bytes.SplitN(c.Identity, []byte("/"), 2)[0] }
	cases := []struct {
		name   string
		branch bool
		// others are the identities the welcomer adds besides itself
		// (alice) and bob, who checks the result.
		others []string
		cfg    Config
		want   error
	}{
		{"reinit, everyone", false, []string{"carol"}, Config{}, nil},
		{"reinit, carol missing", false, nil, Config{}, ErrMemberMismatch},
		{"reinit, stranger added", false, []string{"carol", "dave"}, Config{}, ErrMemberMismatch},
		{"reinit, carol's other device by the app's identity", false, []string{"carol/laptop"}, Config{ClientIdentity: prefix}, nil},
		{"reinit, carol's other device by default identity", false, []string{"carol/laptop"}, Config{}, ErrMemberMismatch},
		{"branch, subset", true, nil, Config{}, nil},
		{"branch, everyone", true, []string{"carol"}, Config{}, nil},
		{"branch, stranger", true, []string{"dave"}, Config{}, ErrMemberMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := s3
			if tc.branch {
				id = s1
			}
			var gs []*Group
			if tc.branch {
				gs = threeMembers(t, Config{})
			} else {
				gs = reinitialised(t)
			}
			me, bob := newBundle(t, id, "alice"), newBundle(t, id, "bob")
			kps := []*message.KeyPackage{&bob.KeyPackage}
			for _, o := range tc.others {
				kps = append(kps, &newBundle(t, id, o).KeyPackage)
			}
			var pc *PendingCommit
			var err error
			if tc.branch {
				pc, err = gs[0].Branch([]byte("sub"), nil, me, kps)
			} else {
				pc, err = gs[0].ReInit(me, kps)
			}
			if err != nil {
				t.Fatal(err)
			}
			b := joinWith(t, pc, bob, gs[1], tc.cfg)
			if tc.branch {
				err = b.CheckBranch(gs[1])
			} else {
				err = b.CheckReInit(gs[1])
			}
			if tc.want == nil && err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && (!errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidWelcome)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWelcomePSKs(t *testing.T) {
	gs := threeMembers(t, Config{})
	if got := gs[1].WelcomePSKs(); got == nil || len(got) != 0 {
		t.Fatalf("welcome without PSKs reports %v", got)
	}
	if gs[0].WelcomePSKs() != nil {
		t.Fatal("the creator's state reports welcome PSKs")
	}
	// An external PSK injected with an Add reaches the joiner's report.
	s, _ := suite.Lookup(s1)
	store := NewPSKStore()
	store.AddExternal([]byte("psk"), []byte("secret"))
	id, err := ExternalPSKID(s, []byte("psk"))
	if err != nil {
		t.Fatal(err)
	}
	dave := newBundle(t, s1, "dave")
	pc, err := gs[0].WithConfig(Config{PSKs: store}).Commit(CommitOptions{Proposals: []*message.Proposal{PSKProposal(id), AddProposal(&dave.KeyPackage)}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Join(pc.Welcome, dave, &JoinOptions{Config: Config{PSKs: store}})
	if err != nil {
		t.Fatal(err)
	}
	got := d.WelcomePSKs()
	if len(got) != 1 || got[0].Type != message.PSKExternal || !bytes.Equal(got[0].ID, id.ID) || !bytes.Equal(got[0].Nonce, id.Nonce) {
		t.Fatalf("welcome PSKs %+v, want the external PSK", got)
	}
	got[0].ID[0] ^= 1
	if bytes.Equal(d.WelcomePSKs()[0].ID, got[0].ID) {
		t.Fatal("WelcomePSKs shares its slices with the state")
	}
	next := mustNext(t, d, mustCommit(t, d, CommitOptions{}))
	if next.WelcomePSKs() != nil {
		t.Fatal("a later epoch reports welcome PSKs")
	}
}

func mustCommit(t *testing.T, g *Group, o CommitOptions) *PendingCommit {
	t.Helper()
	pc, err := g.Commit(o)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// A reinitialised or branched group is tied to the old one only by the
// resumption PSK its Welcome injects; the checks refuse a group whose
// Welcome carries no such PSK, one of another usage or epoch, or one whose
// value is not the old state's (a fork at the same epoch number).
func TestSuccessorResumptionPSK(t *testing.T) {
	type setup struct {
		joined, old *Group
		reinit      bool
	}
	cases := []struct {
		name string
		make func(t *testing.T) setup
		want error
	}{
		{"reinit with its PSK", func(t *testing.T) setup {
			gs := reinitialised(t)
			bob := newBundle(t, s3, "bob")
			pc, err := gs[0].ReInit(newBundle(t, s3, "alice"), []*message.KeyPackage{&bob.KeyPackage, &newBundle(t, s3, "carol").KeyPackage})
			if err != nil {
				t.Fatal(err)
			}
			return setup{joinWith(t, pc, bob, gs[1], Config{}), gs[1], true}
		}, nil},
		{"reinit look-alike without a PSK", func(t *testing.T) setup {
			gs := reinitialised(t)
			// Someone creates a group with the ReInit's parameters and the
			// same members, but not from the old group.
			fake, err := Create(newBundle(t, s3, "alice"), []byte("group v2"), nil, Config{})
			if err != nil {
				t.Fatal(err)
			}
			bob := newBundle(t, s3, "bob")
			pc := mustCommit(t, fake, CommitOptions{Proposals: []*message.Proposal{AddProposal(&bob.KeyPackage), AddProposal(&newBundle(t, s3, "carol").KeyPackage)}})
			return setup{joinWith(t, pc, bob, gs[1], Config{}), gs[1], true}
		}, ErrResumptionPSK},
		{"reinit PSK checked as a branch", func(t *testing.T) setup {
			gs := threeMembers(t, Config{})
			proposeAll(t, gs, 1, ReInitProposal([]byte("group v2"), s1, nil))
			gs, _ = commitAll(t, gs, 0, CommitOptions{})
			bob := newBundle(t, s1, "bob")
			pc, err := gs[0].ReInit(newBundle(t, s1, "alice"), []*message.KeyPackage{&bob.KeyPackage})
			if err != nil {
				t.Fatal(err)
			}
			return setup{joinWith(t, pc, bob, gs[1], Config{}), gs[1], false}
		}, ErrResumptionPSK},
		{"branch of an earlier epoch", func(t *testing.T) setup {
			gs := threeMembers(t, Config{})
			bob := newBundle(t, s1, "bob")
			pc, err := gs[0].Branch([]byte("sub"), nil, newBundle(t, s1, "alice"), []*message.KeyPackage{&bob.KeyPackage})
			if err != nil {
				t.Fatal(err)
			}
			joined := joinWith(t, pc, bob, gs[1], Config{})
			later, _ := commitAll(t, gs, 2, CommitOptions{})
			return setup{joined, later[1], false}
		}, ErrResumptionPSK},
		{"branch of another fork", func(t *testing.T) setup {
			gs := threeMembers(t, Config{})
			pcA, pcB := mustCommit(t, gs[0], CommitOptions{ForcePath: true}), mustCommit(t, gs[0], CommitOptions{ForcePath: true})
			aliceA := mustNext(t, gs[0], pcA)
			bobA, bobB := mustHandle(t, gs[1], pcA.Commit).Next, mustHandle(t, gs[1], pcB.Commit).Next
			bob := newBundle(t, s1, "bob")
			pc, err := aliceA.Branch([]byte("sub"), nil, newBundle(t, s1, "alice"), []*message.KeyPackage{&bob.KeyPackage})
			if err != nil {
				t.Fatal(err)
			}
			joined := joinWith(t, pc, bob, bobA, Config{})
			if err := joined.CheckBranch(bobA); err != nil {
				t.Fatalf("branch of its own fork: %v", err)
			}
			return setup{joined, bobB, false}
		}, ErrResumptionPSK},
		{"state not joined from a Welcome", func(t *testing.T) setup {
			gs := threeMembers(t, Config{})
			bob := newBundle(t, s1, "bob")
			pc, err := gs[0].Branch([]byte("sub"), nil, newBundle(t, s1, "alice"), []*message.KeyPackage{&bob.KeyPackage})
			if err != nil {
				t.Fatal(err)
			}
			return setup{pc.State(), gs[0], false}
		}, ErrResumptionPSK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			su := tc.make(t)
			var err error
			if su.reinit {
				err = su.joined.CheckReInit(su.old)
			} else {
				err = su.joined.CheckBranch(su.old)
			}
			if tc.want == nil && err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && (!errors.Is(err, tc.want) || !errors.Is(err, ErrInvalidWelcome)) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// A ReInit into a suite whose hash has another length: the reinit
// resumption PSK is injected into the new group, so its nonce has the new
// suite's KDF.Nh (RFC 9420 §8.4, §12.1.4), and the old group's
// resumption_psk (old Nh bytes) is its value.
func TestReInitChangesHashLength(t *testing.T) {
	for _, c := range []struct{ from, to suite.ID }{
		{suite.X25519AES128GCMSHA256Ed25519, suite.P521AES256GCMSHA512P521},
		{suite.P521AES256GCMSHA512P521, suite.P384AES256GCMSHA384P384},
		{suite.P384AES256GCMSHA384P384, suite.X25519ChaCha20Poly1305SHA256Ed25519},
		{suite.X448AES256GCMSHA512Ed448, suite.P256AES128GCMSHA256P256},
	} {
		t.Run(fmt.Sprintf("%d-to-%d", c.from, c.to), func(t *testing.T) {
			gs := threeMembersIn(t, c.from, Config{})
			proposeAll(t, gs, 1, ReInitProposal([]byte("group v2"), c.to, nil))
			gs, _ = commitAll(t, gs, 0, CommitOptions{})
			bob, carol := newBundle(t, c.to, "bob"), newBundle(t, c.to, "carol")
			pc, err := gs[0].ReInit(newBundle(t, c.to, "alice"), []*message.KeyPackage{&bob.KeyPackage, &carol.KeyPackage})
			if err != nil {
				t.Fatal(err)
			}
			news := []*Group{pc.State()}
			for i, kp := range []*KeyPackageBundle{bob, carol} {
				g := joinWith(t, pc, kp, gs[i+1], Config{})
				if err := g.CheckReInit(gs[i+1]); err != nil {
					t.Fatal(err)
				}
				psks := g.WelcomePSKs()
				if len(psks) != 1 || len(psks[0].Nonce) != g.Public().Suite().HashSize() {
					t.Fatalf("welcome PSKs %+v", psks)
				}
				news = append(news, g)
			}
			checkAgree(t, news)
			if news[0].Public().Suite().ID() != c.to {
				t.Fatalf("new group in suite %d", news[0].Public().Suite().ID())
			}
			commitAll(t, news, 2, CommitOptions{ForcePath: true})
		})
	}
}
