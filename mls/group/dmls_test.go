package group

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/pprf"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// dmlsGroup makes a DMLS group of n members in suite id, all at epoch 1.
func dmlsGroup(t *testing.T, id suite.ID, n int) []*Group {
	t.Helper()
	cfg := Config{Scheme: keyschedule.SchemeDMLS}
	a, err := Create(newBundle(t, id, name(0)), []byte("dmls group"), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Scheme() != keyschedule.SchemeDMLS {
		t.Fatalf("scheme %v", a.Scheme())
	}
	var props []*message.Proposal
	var kps []*KeyPackageBundle
	for i := 1; i < n; i++ {
		kp := newBundle(t, id, name(i))
		kps = append(kps, kp)
		props = append(props, AddProposal(&kp.KeyPackage))
	}
	pc, err := a.Commit(CommitOptions{Proposals: props})
	if err != nil {
		t.Fatal(err)
	}
	if pc.Welcome == nil {
		t.Fatal("no welcome")
	}
	a, err = a.HandlePendingCommit(pc)
	if err != nil {
		t.Fatal(err)
	}
	gs := []*Group{a}
	for _, kp := range kps {
		g, err := Join(pc.Welcome, kp, &JoinOptions{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	checkAgree(t, gs)
	return gs
}

// Every DMLS commit carries a path, forks give distinct children of one
// epoch, and a child cannot be derived twice from one epoch.
func TestDMLSForkAndPuncture(t *testing.T) {
	for _, id := range []suite.ID{suite.X25519AES128GCMSHA256Ed25519, suite.P256AES128GCMSHA256P256} {
		gs := dmlsGroup(t, id, 5)
		// Members 1 and 3 commit on the same epoch: a fork.
		pc1, err := gs[1].Commit(CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pc3, err := gs[3].Commit(CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, pc := range []*PendingCommit{pc1, pc3} {
			m, err := message.ParseMLSMessage(pc.Commit)
			if err != nil {
				t.Fatal(err)
			}
			if m.PublicMessage == nil || m.PublicMessage.Content.Commit.Path == nil {
				t.Fatal("DMLS commit without a path")
			}
		}
		branch1 := []*Group{mustAdopt(t, gs[1], pc1)}
		branch3 := []*Group{mustAdopt(t, gs[3], pc3)}
		for i, g := range gs {
			if i != 1 {
				branch1 = append(branch1, mustHandle(t, g, pc1.Commit).Next)
			}
			if i != 3 {
				branch3 = append(branch3, mustHandle(t, g, pc3.Commit).Next)
			}
		}
		checkAgree(t, branch1)
		checkAgree(t, branch3)
		if bytes.Equal(branch1[0].EpochAuthenticator(), branch3[0].EpochAuthenticator()) {
			t.Fatal("two branches share an epoch")
		}
		// Processing the same commit again, or our own echo, is refused.
		if _, err := gs[0].Handle(pc1.Commit); !errors.Is(err, pprf.ErrPunctured) {
			t.Fatalf("second processing: %v, want ErrPunctured", err)
		}
		if _, err := gs[1].Handle(pc1.Commit); !errors.Is(err, ErrOwnCommit) {
			t.Fatalf("own commit: %v", err)
		}
		// The punctured state survives storage.
		enc, err := gs[2].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		dec, err := UnmarshalGroup(enc, gs[2].Config())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dec.Handle(pc3.Commit); !errors.Is(err, pprf.ErrPunctured) {
			t.Fatalf("decoded state reprocessed a commit: %v", err)
		}
		// Both branches go on.
		pc, err := branch3[2].Commit(CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		next := []*Group{mustAdopt(t, branch3[2], pc)}
		for i, g := range branch3 {
			if i != 2 {
				next = append(next, mustHandle(t, g, pc.Commit).Next)
			}
		}
		checkAgree(t, next)
	}
}

func mustAdopt(t testing.TB, g *Group, pc *PendingCommit) *Group {
	t.Helper()
	n, err := g.HandlePendingCommit(pc)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDMLSRejectsCommitWithoutPath(t *testing.T) {
	gs := dmlsGroup(t, suite.X25519AES128GCMSHA256Ed25519, 3)
	// A member that pretends to run RFC 9420 makes an add-only commit,
	// which needs no path there.
	enc, err := gs[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := UnmarshalGroup(enc, Config{})
	if err != nil {
		t.Fatal(err)
	}
	rogue.pub.epoch.Scheme = keyschedule.SchemeRFC9420
	rogue.pub.epoch.InitSecret = bytes.Repeat([]byte{1}, rogue.pub.suite.HashSize())
	kp := newBundle(t, suite.X25519AES128GCMSHA256Ed25519, "late")
	pc, err := rogue.Commit(CommitOptions{Proposals: []*message.Proposal{AddProposal(&kp.KeyPackage)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gs[1].Handle(pc.Commit); !errors.Is(err, ErrDMLSPathRequired) {
		t.Fatalf("commit without path: %v, want ErrDMLSPathRequired", err)
	}
}

// Destroy zeroes the epoch's own secrets and leaves its child usable.
func TestDestroy(t *testing.T) {
	gs := dmlsGroup(t, suite.X25519AES128GCMSHA256Ed25519, 3)
	pc, err := gs[0].Commit(CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	child := mustHandle(t, gs[1], pc.Commit).Next
	gs[1].Destroy()
	e := gs[1].pub.epoch
	for _, b := range [][]byte{e.EncryptionSecret, e.ExporterSecret, e.InitSecret, e.ConfirmationKey} {
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Fatal("secret left after Destroy")
		}
	}
	if _, err := gs[1].Protect([]byte("x"), nil); err == nil {
		t.Fatal("destroyed epoch still encrypts")
	}
	msg, err := child.Protect([]byte("hello"), nil)
	if err != nil {
		t.Fatal(err)
	}
	parent := mustAdopt(t, gs[0], pc)
	if r := mustHandle(t, parent, msg); string(r.ApplicationData) != "hello" {
		t.Fatal("child unusable after its parent was destroyed")
	}
}
