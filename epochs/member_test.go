package epochs

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

var dmlsConfig = group.Config{Scheme: keyschedule.SchemeDMLS}

func newKP(t testing.TB, d Device) *group.KeyPackageBundle {
	t.Helper()
	s, _ := suite.Lookup(suite.X25519AES128GCMSHA256Ed25519)
	priv, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := group.NewKeyPackage(message.BasicCredential([]byte(d.Identity())), priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// room of n users, one device each, all joined; returns the members, all
// at the epoch where the first added the others, and the room.
func memberRoom(t testing.TB, n int) ([]*Member, Room) { return memberRoomHeld(t, n, n) }

// memberRoomHeld is memberRoom where only the first held devices join (the
// others are in the tree but hold no state), for large benchmarks.
func memberRoomHeld(t testing.TB, n, held int) ([]*Member, Room) {
	t.Helper()
	return memberRoomWith(t, n, held, dmlsConfig)
}

// memberRoomWith is memberRoomHeld with the given group configuration.
func memberRoomWith(t testing.TB, n, held int, cfg group.Config) ([]*Member, Room) {
	t.Helper()
	room := Room{Members: map[string]MemberState{}, Devices: map[string][]string{}}
	var devs []Device
	for i := range n {
		d := Device{fmt.Sprintf("@u%d:x", i), "D"}
		devs = append(devs, d)
		room.Members[d.UserID] = Join
		room.Devices[d.UserID] = []string{"D"}
	}
	g, err := group.Create(newKP(t, devs[0]), []byte("!r:x"), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	first, err := NewMember(devs[0], g, "$create", Policy{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	bundles := map[Device]*group.KeyPackageBundle{}
	out, err := first.Commit(room, func(d Device) *message.KeyPackage {
		bundles[d] = newKP(t, d)
		return &bundles[d].KeyPackage
	}, "$c0", t0)
	if err != nil {
		t.Fatal(err)
	}
	ms := []*Member{first}
	for _, d := range devs[1:held] {
		m := NewJoinedMember(d, cfg, Policy{})
		if _, err := m.Join(out.Welcome, bundles[d], out.Commit, t0); err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	return ms, room
}

func TestMemberForkApplyOldEpochAndResolve(t *testing.T) {
	ms, room := memberRoom(t, 4)
	now := t0.Add(time.Second)
	// Members 1 and 2 commit on the same epoch.
	a, err := ms[1].Commit(room, nil, "$a", now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ms[2].Commit(room, nil, "$b", now)
	if err != nil {
		t.Fatal(err)
	}
	// A message in the parent epoch, sent before member 0 saw either.
	parent := a.Commit.Base
	_, old, err := ms[3].Encrypt([]byte("old"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []Commit{a.Commit, b.Commit} {
		if _, err := ms[0].Apply(c, room, room, now); err != nil {
			t.Fatal(err)
		}
		if _, err := ms[0].Apply(c, room, room, now); !errors.Is(err, ErrDuplicateCommit) {
			t.Fatalf("duplicate: %v", err)
		}
	}
	if !ms[0].Graph().Forked() {
		t.Fatal("no fork")
	}
	// The old epoch still decrypts.
	if pt, from, err := ms[0].Decrypt(parent, old); err != nil || string(pt) != "old" || from != ms[3].Self {
		t.Fatalf("decrypt in the parent epoch: %q %v %v", pt, from, err)
	}
	// Member 3 saw only the losing branch, and commits on it: a commit on
	// a non-newest epoch for member 0.
	base, _ := ms[0].Graph().Base()
	loser := a.Commit
	if base == a.Commit.Epoch {
		loser = b.Commit
	}
	if _, err := ms[3].Apply(loser, room, room, now); err != nil {
		t.Fatal(err)
	}
	c, err := ms[3].Commit(room, nil, "$c", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms[0].Apply(c.Commit, room, room, now); err != nil {
		t.Fatalf("commit on a non-newest epoch: %v", err)
	}
	// Member 0 resolves: on its base, naming the other head.
	heads := ms[0].Graph().Heads()
	r, err := ms[0].Commit(room, nil, "$r", now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Commit.Base != heads[0] || len(r.Commit.Resolves) != 1 || r.Commit.Resolves[0] != heads[1] {
		t.Fatalf("resolution on %v naming %v; heads %v", r.Commit.Base, r.Commit.Resolves, heads)
	}
	if ms[0].Graph().Forked() {
		t.Fatal("fork open after resolving")
	}
	// A member that holds both applies it and retires the other head.
	for _, x := range []Commit{a.Commit, b.Commit, c.Commit} {
		ms[1].Apply(x, room, room, now) // its own comes back as a duplicate
	}
	if _, err := ms[1].Apply(r.Commit, room, room, now); err != nil {
		t.Fatal(err)
	}
	if h := ms[1].Graph().Heads(); len(h) != 1 || h[0] != r.Commit.Epoch {
		t.Fatalf("heads after the resolution: %v", h)
	}
	// A signed resolves list cannot be changed in the event.
	forged := r.Commit
	forged.Resolves = nil
	if _, err := ms[2].Apply(forged, room, room, now); !errors.Is(err, ErrInvalidCommit) && !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("forged resolves: %v", err)
	}
	// Retention drops and zeroes the settled epochs.
	ms[1].Policy = Policy{MaxEpochs: 1}
	dropped, err := ms[1].Retain(now)
	if err != nil || len(dropped) == 0 {
		t.Fatalf("retain: %v %v", dropped, err)
	}
	// Dropped, and its metadata pruned: unknown from now on.
	if _, _, err := ms[1].Decrypt(parent, old); !errors.Is(err, ErrParentNotRetained) && !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("decrypt in a dropped epoch: %v", err)
	}
	if _, err := ms[1].Apply(c.Commit, room, room, now); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("old commit: %v", err)
	}
}

func TestMemberRejectsUnauthorisedAdd(t *testing.T) {
	ms, room := memberRoom(t, 3)
	evil := Device{"@evil:x", "E"}
	out, err := ms[1].CommitProposals([]*message.Proposal{group.AddProposal(&newKP(t, evil).KeyPackage)}, "$evil")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ms[0].Apply(out.Commit, room, room, t0)
	var rej *Rejection
	if !errors.Is(err, ErrUnauthorisedAdd) || !errors.As(err, &rej) || rej.Device != evil {
		t.Fatalf("unauthorised add: %v", err)
	}
	if ms[0].Graph().Len() != 2 {
		t.Fatal("rejected commit entered the graph")
	}
	// Once the user is invited, the same kind of commit is allowed.
	room.Members[evil.UserID] = Invite
	out, err = ms[1].CommitProposals([]*message.Proposal{group.AddProposal(&newKP(t, evil).KeyPackage)}, "$ok")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms[0].Apply(out.Commit, room, room, t0); err != nil {
		t.Fatal(err)
	}
}

func TestMemberEncoding(t *testing.T) {
	ms, room := memberRoom(t, 3)
	a, err := ms[1].Commit(room, nil, "$a", t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms[0].Apply(a.Commit, room, room, t0); err != nil {
		t.Fatal(err)
	}
	enc, err := ms[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := UnmarshalMember(enc, dmlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Self != ms[0].Self || dec.Graph().Len() != ms[0].Graph().Len() {
		t.Fatal("round trip lost state")
	}
	// The decoded member remembers what it applied, and goes on.
	if _, err := dec.Apply(a.Commit, room, room, t0); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("decoded member reapplied: %v", err)
	}
	b, err := ms[2].Commit(room, nil, "$b", t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dec.Apply(b.Commit, room, room, t0); err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{0, 1, len(enc) / 2, len(enc) - 1} {
		if _, err := UnmarshalMember(enc[:cut], dmlsConfig); err == nil {
			t.Fatalf("truncated at %d accepted", cut)
		}
	}
}

func FuzzUnmarshalMember(f *testing.F) {
	ms, _ := memberRoom(f, 2)
	enc, err := ms[1].MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := UnmarshalMember(data, dmlsConfig)
		if err != nil {
			return
		}
		if _, err := m.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
	})
}

// A Member's graph holds each epoch's state; the states themselves keep no
// past epochs' secret trees, whatever the caller's configuration asks.
func TestMemberStatesKeepNoPastEpochs(t *testing.T) {
	cfg := dmlsConfig
	cfg.PastEpochs = 4
	ms, room := memberRoomWith(t, 2, 2, cfg)
	m := ms[0]
	for i := range 3 {
		if _, err := m.Commit(room, nil, fmt.Sprintf("$c%d", i), t0); err != nil {
			t.Fatal(err)
		}
		_, base, err := m.Base()
		if err != nil {
			t.Fatal(err)
		}
		if base.Epoch() != uint64(i+2) || base.Config().PastEpochs != 0 || len(base.PastEpochs()) != 0 {
			t.Fatalf("epoch %d: config keeps %d past epochs, state holds %v", base.Epoch(), base.Config().PastEpochs, base.PastEpochs())
		}
	}
	enc, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	dec, err := UnmarshalMember(enc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, base, _ := dec.Base(); base.Config().PastEpochs != 0 {
		t.Fatalf("decoded member keeps %d past epochs", base.Config().PastEpochs)
	}
}
