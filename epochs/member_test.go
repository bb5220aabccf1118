package epochs

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
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

// one is a Member with one device, as a member that is alone in the room
// (or another deployment) has.
type one struct {
	*Member
	Self Device
}

// commit has the device commit; the homeserver then returns eventID,
// which is recorded (SetCommitEvent) and set in the returned commit as
// receivers see it.
func (o one) commit(t testing.TB, room Room, kps KeyPackages, eventID string, now time.Time) *Outgoing {
	t.Helper()
	out, err := o.Commit(o.Self, room, kps, now)
	if err != nil {
		t.Fatalf("%v commit: %v", o.Self, err)
	}
	if err := o.SetCommitEvent(out.Commit.Epoch, eventID); err != nil {
		t.Fatal(err)
	}
	out.Commit.EventID = eventID
	return out
}

// newCreator creates the group as device d.
func newCreator(t testing.TB, d Device, cfg group.Config) one {
	t.Helper()
	g, err := group.Create(newKP(t, d), []byte("!r:x"), nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMember(d, g, "$create", Policy{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return one{m, d}
}

// room of n users, one device each, all joined; returns the members, all
// at the epoch where the first added the others, and the room.
func memberRoom(t testing.TB, n int) ([]one, Room) { return memberRoomHeld(t, n, n) }

// memberRoomHeld is memberRoom where only the first held devices join (the
// others are in the tree but hold no state), for large benchmarks.
func memberRoomHeld(t testing.TB, n, held int) ([]one, Room) {
	t.Helper()
	return memberRoomWith(t, n, held, dmlsConfig)
}

// memberRoomWith is memberRoomHeld with the given group configuration.
func memberRoomWith(t testing.TB, n, held int, cfg group.Config) ([]one, Room) {
	t.Helper()
	room := Room{Members: map[string]MemberState{}, Devices: map[string][]string{}}
	var devs []Device
	for i := range n {
		d := Device{fmt.Sprintf("@u%d:x", i), "D"}
		devs = append(devs, d)
		room.Members[d.UserID] = Join
		room.Devices[d.UserID] = []string{"D"}
	}
	first := newCreator(t, devs[0], cfg)
	bundles := map[Device]*group.KeyPackageBundle{}
	out := first.commit(t, room, func(d Device) *message.KeyPackage {
		bundles[d] = newKP(t, d)
		return &bundles[d].KeyPackage
	}, "$c0", t0)
	ms := []one{first}
	for _, d := range devs[1:held] {
		m := one{NewJoinedMember(cfg, Policy{}), d}
		if _, err := m.Join(d, out.Welcome, bundles[d], out.Commit, t0); err != nil {
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
	a := ms[1].commit(t, room, nil, "$a", now)
	b := ms[2].commit(t, room, nil, "$b", now)
	// A message in the parent epoch, sent before member 0 saw either.
	parent := a.Commit.Base
	_, old, err := ms[3].Encrypt(ms[3].Self, []byte("old"))
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
	base, _ := ms[0].Base()
	loser := a.Commit
	if base == a.Commit.Epoch {
		loser = b.Commit
	}
	if _, err := ms[3].Apply(loser, room, room, now); err != nil {
		t.Fatal(err)
	}
	c := ms[3].commit(t, room, nil, "$c", now)
	if c.Commit.BaseEvent != loser.EventID {
		t.Fatalf("commit names base event %q, want %q", c.Commit.BaseEvent, loser.EventID)
	}
	if _, err := ms[0].Apply(c.Commit, room, room, now); err != nil {
		t.Fatalf("commit on a non-newest epoch: %v", err)
	}
	// Member 0 resolves: on its base, naming the other head.
	heads := ms[0].Graph().Heads()
	r := ms[0].commit(t, room, nil, "$r", now)
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
	// An old commit on a dropped epoch: its hash was forgotten with the
	// epoch, and it cannot be processed.
	if _, err := ms[1].Apply(c.Commit, room, room, now); !errors.Is(err, ErrDuplicateCommit) && !errors.Is(err, ErrParentNotRetained) {
		t.Fatalf("old commit: %v", err)
	}
}

// An epoch that only one member committed above goes once the others
// have moved on: in each member's view, the others have sent a message in
// a later epoch, and its own device holds the later epoch that another
// member's commit made (it will never go back, whether or not it speaks).
func TestMessagesSettleEpochs(t *testing.T) {
	ms, room := memberRoom(t, 3)
	now := t0.Add(time.Second)
	c := ms[0].commit(t, room, nil, "$c1", now)
	for _, m := range ms[1:] {
		if _, err := m.Apply(c.Commit, room, room, now); err != nil {
			t.Fatal(err)
		}
	}
	old, next := c.Commit.Base, c.Commit.Epoch
	retains := func(m one) bool {
		t.Helper()
		if _, err := m.Retain(now); err != nil {
			t.Fatal(err)
		}
		n, ok := m.Graph().Node(old)
		return ok && n.Retained
	}
	check := func(when string, want ...bool) {
		t.Helper()
		for i, m := range ms {
			if got := retains(m); got != want[i] {
				t.Fatalf("%s: member %d retains the old epoch: %v, want %v", when, i, got, want[i])
			}
		}
	}
	send := func(from one, text string) {
		t.Helper()
		epoch, msg, err := from.Encrypt(from.Self, []byte(text))
		if err != nil || epoch != next {
			t.Fatalf("encrypt: epoch %v, %v", epoch, err)
		}
		for _, m := range ms {
			if m.Self == from.Self {
				continue
			}
			if pt, by, err := m.Decrypt(epoch, msg); err != nil || string(pt) != text || by != from.Self {
				t.Fatalf("%v decrypts %q from %v: %v", m.Self, pt, by, err)
			}
		}
	}
	// Member 0 made the commit: its device can still take it back, and
	// members 1 and 2 have not spoken; each of those two waits for the
	// other.
	check("after the commit", true, true, true)
	send(ms[1], "one")
	// Member 2 has it from member 1's message; member 0 still waits for
	// member 2, and member 1 for member 2 too.
	check("after member 1 spoke", true, true, false)
	send(ms[2], "two")
	check("after member 2 spoke", false, false, false)
}

// A member's messages in an epoch precede its commit above it in the
// room's DAG, but may arrive after it (a hole paged back after a
// partition): with Policy.Linger, the epoch that the commit settles stays
// that long, and the late message still decrypts.
func TestLingerKeepsASettledEpochForLateMessages(t *testing.T) {
	for _, linger := range []time.Duration{0, time.Minute} {
		ms, room := memberRoom(t, 2)
		now := t0.Add(time.Second)
		ms[1].Policy = Policy{Linger: linger}
		epoch, late, err := ms[0].Encrypt(ms[0].Self, []byte("late"))
		if err != nil {
			t.Fatal(err)
		}
		c := ms[0].commit(t, room, nil, "$c", now)
		if _, err := ms[1].Apply(c.Commit, room, room, now); err != nil {
			t.Fatal(err)
		}
		// Member 0 committed above the epoch and member 1 holds the epoch
		// that member 0's commit made: it has settled.
		if _, err := ms[1].Retain(now); err != nil {
			t.Fatal(err)
		}
		pt, _, err := ms[1].Decrypt(epoch, late)
		if linger == 0 {
			if err == nil {
				t.Fatal("no linger: the settled epoch still decrypts")
			}
			continue
		}
		if err != nil || string(pt) != "late" {
			t.Fatalf("linger %v: late message %q, %v", linger, pt, err)
		}
		if at := ms[1].RetainAt(); !at.Equal(now.Add(linger)) {
			t.Fatalf("retain again at %v, want the linger's end %v", at, now.Add(linger))
		}
		retained := func(at time.Time) bool {
			t.Helper()
			if _, err := ms[1].Retain(at); err != nil {
				t.Fatal(err)
			}
			n, ok := ms[1].Graph().Node(epoch)
			return ok && n.Retained
		}
		if !retained(now.Add(linger - time.Second)) {
			t.Fatal("dropped before the linger passed")
		}
		if retained(now.Add(linger)) {
			t.Fatal("kept after the linger passed")
		}
		if at := ms[1].RetainAt(); !at.IsZero() {
			t.Fatalf("retain again at %v with only the head left", at)
		}
	}
}

func TestMemberRejectsUnauthorisedAdd(t *testing.T) {
	ms, room := memberRoom(t, 3)
	evil := Device{"@evil:x", "E"}
	out, err := ms[1].CommitProposals(ms[1].Self, []*message.Proposal{group.AddProposal(&newKP(t, evil).KeyPackage)})
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
	if _, err := ms[0].Apply(out.Commit, room, room, t0); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("rejected commit again: %v", err)
	}
	// Once the user is invited, the same kind of commit is allowed.
	room.Members[evil.UserID] = Invite
	out, err = ms[1].CommitProposals(ms[1].Self, []*message.Proposal{group.AddProposal(&newKP(t, evil).KeyPackage)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms[0].Apply(out.Commit, room, room, t0); err != nil {
		t.Fatal(err)
	}
}

// An invited user's devices are added by the next commit, as a joined
// user's are.
func TestMemberAddsInvitedDevices(t *testing.T) {
	ms, room := memberRoom(t, 2)
	guest := Device{"@guest:x", "G"}
	room.Members[guest.UserID] = Invite
	room.Devices[guest.UserID] = []string{guest.DeviceID}
	var kp *group.KeyPackageBundle
	out := ms[0].commit(t, room, func(d Device) *message.KeyPackage {
		kp = newKP(t, d)
		return &kp.KeyPackage
	}, "$inv", t0)
	if !slices.Equal(out.Added, []Device{guest}) || out.Welcome == nil {
		t.Fatalf("added %v", out.Added)
	}
	if _, err := ms[1].Apply(out.Commit, room, room, t0); err != nil {
		t.Fatal(err)
	}
	g := one{NewJoinedMember(dmlsConfig, Policy{}), guest}
	if _, err := g.Join(guest, out.Welcome, kp, out.Commit, t0); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ms[1].Devices(out.Commit.Epoch), guest) {
		t.Fatal("invited device not in the group")
	}
}

func TestMemberEncoding(t *testing.T) {
	ms, room := memberRoom(t, 3)
	a := ms[1].commit(t, room, nil, "$a", t0)
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
	if !slices.Equal(dec.Ours(), ms[0].Ours()) || dec.Graph().Len() != ms[0].Graph().Len() {
		t.Fatal("round trip lost state")
	}
	if again, _ := dec.MarshalBinary(); !bytes.Equal(again, enc) {
		t.Fatal("re-encoding differs")
	}
	// The decoded member remembers what it applied, and goes on.
	if _, err := dec.Apply(a.Commit, room, room, t0); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("decoded member reapplied: %v", err)
	}
	b := ms[2].commit(t, room, nil, "$b", t0)
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
	f.Add([]byte{2})
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

// LoadMember decodes metadata of any form without panicking, and what it
// accepts re-encodes identically; the states it names are loaded later.
func FuzzLoadMember(f *testing.F) {
	ms, room := memberRoom(f, 3)
	a := ms[1].commit(f, room, nil, "$a", t0)
	ms[0].Apply(a.Commit, room, room, t0)
	for _, m := range ms {
		ch, err := m.Flush()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ch.Metadata)
		v3, err := m.marshalMetadataAs(3) // holders listed
		if err != nil {
			f.Fatal(err)
		}
		f.Add(v3)
	}
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := LoadMember(data, dmlsConfig, func(ID) (*StoredEpoch, error) { return nil, errors.New("none") })
		if err != nil {
			return
		}
		// Versions 3 and 4 are written too (version 3 for such tests):
		// each decodes only what it encodes.
		again, err := m.marshalMetadataAs(max(data[0], 3))
		if err != nil {
			t.Fatal(err)
		}
		if data[0] >= 3 && !bytes.Equal(again, data) {
			t.Fatalf("metadata re-encodes differently:\n%x\n%x", data, again)
		}
		// The rules run on metadata alone.
		_ = m.Graph().Heads()
		_, _ = m.Graph().NextCommit(room)
		if _, err := m.Retain(t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	})
}

// A Member's states keep no past epochs' secret trees, whatever the
// caller's configuration asks: the graph holds each epoch's state.
func TestMemberStatesKeepNoPastEpochs(t *testing.T) {
	cfg := dmlsConfig
	cfg.PastEpochs = 4
	ms, room := memberRoomWith(t, 2, 2, cfg)
	m := ms[0]
	for i := range 3 {
		m.commit(t, room, nil, fmt.Sprintf("$c%d", i), t0)
		id, _ := m.Base()
		base, err := m.Group(id, m.Self)
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
	id, _ := dec.Base()
	if base, _ := dec.Group(id, m.Self); base.Config().PastEpochs != 0 {
		t.Fatalf("decoded member keeps %d past epochs", base.Config().PastEpochs)
	}
}

// An epoch whose parent went keeps no commit: our devices follow with it
// only from the parent. A stored one is named once in CommitsUnneeded; a
// new one is written without it.
func TestCommitClearedWhenParentGoes(t *testing.T) {
	ms, room := memberRoom(t, 2)
	a := ms[0]
	a.Policy = Policy{MaxEpochs: 1}
	if _, err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	first := a.commit(t, room, nil, "$first", t0.Add(time.Second))
	ch, err := a.Flush()
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(ch.Epochs, func(e EpochChanges) bool { return e.Epoch == first.Commit.Epoch }); i < 0 || ch.Epochs[i].Commit == nil {
		t.Fatal("the new epoch is not written with its commit")
	}
	dropped, err := a.Retain(t0.Add(time.Minute))
	if err != nil || !slices.Contains(dropped, first.Commit.Base) {
		t.Fatalf("dropped %v (%v), want the first commit's base", dropped, err)
	}
	if ch, err = a.Flush(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.CommitsUnneeded, []ID{first.Commit.Epoch}) {
		t.Fatalf("commits unneeded %v, want %v", ch.CommitsUnneeded, first.Commit.Epoch)
	}
	if ch, _ = a.Flush(); ch.CommitsUnneeded != nil {
		t.Fatalf("named again: %v", ch.CommitsUnneeded)
	}

	// Made and orphaned before a flush: written without its commit.
	second := a.commit(t, room, nil, "$second", t0.Add(2*time.Minute))
	if _, err := a.Retain(t0.Add(3 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ch, err = a.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, e := range ch.Epochs {
		if e.Epoch == second.Commit.Epoch && (e.Static == nil || e.Commit != nil) {
			t.Fatalf("the orphaned new epoch written with static %v, commit %v", e.Static != nil, e.Commit != nil)
		}
	}
	if slices.Contains(ch.CommitsUnneeded, second.Commit.Epoch) || !slices.Contains(ch.Dropped, first.Commit.Epoch) {
		t.Fatalf("unneeded %v, dropped %v", ch.CommitsUnneeded, ch.Dropped)
	}
	// The room goes on: b applies both, and reads a's message.
	for _, c := range []*Outgoing{first, second} {
		if _, err := ms[1].Apply(c.Commit, room, room, t0); err != nil {
			t.Fatal(err)
		}
	}
	epoch, ct, err := a.Encrypt(a.Self, []byte("on"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, _, err := ms[1].Decrypt(epoch, ct); err != nil || string(pt) != "on" {
		t.Fatalf("b reads %q: %v", pt, err)
	}
}

// A commit older than every retained epoch is history (ErrBeforeRetained,
// an ErrParentNotRetained): a joiner pages back over the commits before
// its Welcome, and nothing there is refused. A commit whose base went but
// whose epoch is as new as a retained one is a branch the member cannot
// follow, not history.
func TestCommitBeforeRetainedIsHistory(t *testing.T) {
	ms, room := memberRoom(t, 3)
	now := t0.Add(time.Second)
	c1 := ms[0].commit(t, room, nil, "$c1", now)
	for _, m := range ms[1:] {
		if _, err := m.Apply(c1.Commit, room, room, now); err != nil {
			t.Fatal(err)
		}
	}
	c2 := ms[0].commit(t, room, nil, "$c2", now)
	if _, err := ms[1].Apply(c2.Commit, room, room, now); err != nil {
		t.Fatal(err)
	}
	fork := ms[2].commit(t, room, nil, "$fork", now) // on c1's epoch, beside c2
	ms[1].Policy = Policy{MaxEpochs: 1}
	if _, err := ms[1].Retain(now); err != nil {
		t.Fatal(err)
	}
	if _, ok := ms[1].Graph().Node(c2.Commit.Epoch); !ok {
		t.Fatal("the head went")
	}
	_, err := ms[1].Apply(c1.Commit, room, room, now)
	if !errors.Is(err, ErrBeforeRetained) || !errors.Is(err, ErrParentNotRetained) {
		t.Fatalf("a commit older than every retained epoch: %v", err)
	}
	// (Its base's metadata stays while it orders the retained epochs, so
	// the commit waits for that base as for one known from history.)
	_, err = ms[1].Apply(fork.Commit, room, room, now)
	if err == nil || errors.Is(err, ErrBeforeRetained) {
		t.Fatalf("a branch beside a retained epoch on a dropped base: %v", err)
	}
}
