package group

import (
	"bytes"
	"errors"
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
