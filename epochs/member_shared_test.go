package epochs

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// serviceRoom is a room with n independent members (one device each, the
// first created the group) and one service holding the devices ours, all
// in the group's second epoch; keyPackages for later adds come from kps.
type serviceRoom struct {
	t       testing.TB
	room    Room
	indep   []one
	svc     *Member
	ours    []Device
	bundles map[Device]*group.KeyPackageBundle
	events  int
}

func newServiceRoom(t testing.TB, n int, ours ...Device) *serviceRoom {
	t.Helper()
	r := &serviceRoom{t: t, room: Room{Members: map[string]MemberState{}, Devices: map[string][]string{}}, bundles: map[Device]*group.KeyPackageBundle{}}
	var devs []Device
	for i := range n {
		devs = append(devs, Device{fmt.Sprintf("@u%d:x", i), "D"})
	}
	for _, d := range append(slices.Clone(devs), ours...) {
		r.room.Members[d.UserID] = Join
		r.room.Devices[d.UserID] = append(r.room.Devices[d.UserID], d.DeviceID)
	}
	r.indep = []one{newCreator(t, devs[0], dmlsConfig)}
	out := r.commit(r.indep[0])
	for _, d := range devs[1:] {
		o := one{NewJoinedMember(dmlsConfig, Policy{}), d}
		if _, err := o.Join(d, out.Welcome, r.bundles[d], out.Commit, t0); err != nil {
			t.Fatal(err)
		}
		r.indep = append(r.indep, o)
	}
	r.svc = NewJoinedMember(dmlsConfig, Policy{})
	for _, d := range ours {
		if _, err := r.svc.Join(d, out.Welcome, r.bundles[d], out.Commit, t0); err != nil {
			t.Fatal(err)
		}
	}
	r.ours = slices.Clone(ours)
	return r
}

func (r *serviceRoom) kps(d Device) *message.KeyPackage {
	r.bundles[d] = newKP(r.t, d)
	return &r.bundles[d].KeyPackage
}

// commit has an independent member commit; every other independent member
// applies it.
func (r *serviceRoom) commit(by one) *Outgoing {
	r.t.Helper()
	r.events++
	out := by.commit(r.t, r.room, r.kps, fmt.Sprintf("$e%d", r.events), t0)
	for _, o := range r.indep {
		if o.Self != by.Self {
			if _, err := o.Apply(out.Commit, r.room, r.room, t0); err != nil {
				r.t.Fatalf("%v applies: %v", o.Self, err)
			}
		}
	}
	return out
}

// agree checks that the service holds the independents' base, with a
// private state for each of want and no other device, and that each of
// them can send to the others.
func (r *serviceRoom) agree(want ...Device) {
	r.t.Helper()
	ref, _ := r.indep[0].Base()
	base, err := r.svc.Base()
	if err != nil || base != ref {
		r.t.Fatalf("service base %v, members' %v: %v", base, ref, err)
	}
	if got := r.svc.Holders(base); !slices.Equal(got, sortedDevices(want)) {
		r.t.Fatalf("service holds %v in the base, want %v", got, want)
	}
	pub, _ := r.svc.Public(base)
	refPub, _ := r.indep[0].Public(ref)
	if !bytes.Equal(pub.EpochAuthenticator(), refPub.EpochAuthenticator()) {
		r.t.Fatal("epoch authenticators differ")
	}
	for _, d := range want {
		epoch, ct, err := r.svc.Encrypt(d, []byte("from "+d.String()))
		if err != nil {
			r.t.Fatalf("%v encrypts: %v", d, err)
		}
		pt, from, err := r.indep[1].Decrypt(epoch, ct)
		if err != nil || from != d || string(pt) != "from "+d.String() {
			r.t.Fatalf("%v's message read as %q from %v: %v", d, pt, from, err)
		}
	}
	epoch, ct, err := r.indep[2].Encrypt(r.indep[2].Self, []byte("to the service"))
	if err != nil {
		r.t.Fatal(err)
	}
	if pt, from, err := r.svc.Decrypt(epoch, ct); err != nil || string(pt) != "to the service" || from != r.indep[2].Self {
		r.t.Fatalf("service reads %q from %v: %v", pt, from, err)
	}
}

// welcomeFirst has an independent member add our device d, and d join
// from the Welcome before the commit event reaches us: as on the wire, the
// commit it names carries no message (groups.ParseWelcome).
func (r *serviceRoom) welcomeFirst(d Device) *Outgoing {
	r.t.Helper()
	r.room.Members[d.UserID] = Join
	r.room.Devices[d.UserID] = []string{d.DeviceID}
	out := r.commit(r.indep[1])
	if !slices.Equal(out.Added, []Device{d}) {
		r.t.Fatalf("added %v, want %v", out.Added, d)
	}
	wire := out.Commit
	wire.Message = nil
	if _, err := r.svc.Join(d, out.Welcome, r.bundles[d], wire, t0); err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *serviceRoom) apply(c Commit) (ID, error) {
	return r.svc.Apply(c, r.room, r.room, t0)
}

// One Member holds several of our devices: a commit is processed once for
// all of them, our own commit carries all of them on, devices added later
// enter by Welcome whether it arrives before or after the commit (and
// even after later commits), a device removed by the group or leaving the
// room is dropped, and a message is decrypted once for all.
func TestMemberSharedDevices(t *testing.T) {
	a, b, c := dev("@a:x", "A"), dev("@b:x", "B"), dev("@c:x", "C")
	r := newServiceRoom(t, 4, a, b, c)
	r.agree(a, b, c)

	// Another member's commit: processed once for a, b and c.
	out := r.commit(r.indep[1])
	pub, _ := r.svc.Public(out.Commit.Base)
	before, _ := pub.Changes()
	if _, err := r.apply(out.Commit); err != nil {
		t.Fatal(err)
	}
	if after, _ := pub.Changes(); after != before+1 {
		t.Fatalf("the base's PRF was punctured %d times", after-before)
	}
	r.agree(a, b, c)

	// Our own commit, by b: a and c go on without processing it.
	mine, err := r.svc.Commit(b, r.room, r.kps, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range r.indep {
		if _, err := o.Apply(mine.Commit, r.room, r.room, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.apply(mine.Commit); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("our own echo: %v", err)
	}
	r.agree(a, b, c)

	// A device of ours added by another member, the commit first: d
	// joins the epoch we hold (JoinPrivate).
	d := dev("@a:x", "A2")
	r.room.Devices[d.UserID] = append(r.room.Devices[d.UserID], d.DeviceID)
	out = r.commit(r.indep[0])
	if !slices.Equal(out.Added, []Device{d}) {
		t.Fatalf("added %v", out.Added)
	}
	if _, err := r.apply(out.Commit); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.svc.Join(d, out.Welcome, r.bundles[d], out.Commit, t0); got != out.Commit.Epoch {
		t.Fatal("join into a held epoch")
	}
	r.agree(a, b, c, d)

	// The Welcome first: e joins in full, and the commit the Welcome
	// came with brings the others in, without the key schedule (the
	// base's PRF is left whole); the commit event is then a duplicate.
	e := dev("@e:x", "E")
	r.room.Members[e.UserID] = Join
	r.room.Devices[e.UserID] = []string{e.DeviceID}
	out = r.commit(r.indep[3])
	pub, _ = r.svc.Public(out.Commit.Base)
	before, _ = pub.Changes()
	if _, err := r.svc.Join(e, out.Welcome, r.bundles[e], out.Commit, t0); err != nil {
		t.Fatal(err)
	}
	if got := r.svc.Holders(out.Commit.Epoch); !slices.Equal(got, []Device{a, d, b, c, e}) {
		t.Fatalf("holders after the Welcome: %v", got)
	}
	if _, err := r.apply(out.Commit); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("the commit after its Welcome: %v", err)
	}
	if after, _ := pub.Changes(); after != before {
		t.Fatal("the base's PRF was punctured")
	}
	r.agree(a, b, c, d, e)

	// A Welcome that arrives after later commits were processed for the
	// others: f follows from its epoch into the newest.
	f := dev("@f:x", "F")
	r.room.Members[f.UserID] = Join
	r.room.Devices[f.UserID] = []string{f.DeviceID}
	added := r.commit(r.indep[2])
	if _, err := r.apply(added.Commit); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.apply(r.commit(r.indep[1]).Commit); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.svc.Join(f, added.Welcome, r.bundles[f], added.Commit, t0); err != nil {
		t.Fatal(err)
	}
	r.agree(a, b, c, d, e, f)

	// The group removes c (its device list no longer holds it): the
	// others go on.
	r.room.Devices[c.UserID] = nil
	out = r.commit(r.indep[0])
	if !slices.Equal(out.Removed, []Device{c}) {
		t.Fatalf("removed %v", out.Removed)
	}
	if _, err := r.apply(out.Commit); err != nil {
		t.Fatal(err)
	}
	r.agree(a, b, d, e, f)

	// e's user leaves the room: e is dropped from every epoch at once.
	if _, err := r.svc.RemoveDevice(e); err != nil {
		t.Fatal(err)
	}
	for id, n := range r.svc.Graph().nodes {
		if n.Retained && slices.Contains(r.svc.Holders(id), e) {
			t.Fatalf("e still holds %v", id)
		}
	}
	if _, _, err := r.svc.Encrypt(e, []byte("x")); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("a removed device encrypts: %v", err)
	}
	delete(r.room.Members, e.UserID)
	out = r.commit(r.indep[0])
	if _, err := r.apply(out.Commit); err != nil {
		t.Fatal(err)
	}
	r.agree(a, b, d, f)

	// The whole service leaves (c, removed from the group, still held
	// the older epochs): nothing is left to decrypt for.
	for _, x := range []Device{a, b, c, d, f} {
		if _, err := r.svc.RemoveDevice(x); err != nil {
			t.Fatal(err)
		}
	}
	if ours := r.svc.Ours(); len(ours) != 0 {
		t.Fatalf("devices left: %v", ours)
	}
	epoch, ct, _ := r.indep[1].Encrypt(r.indep[1].Self, []byte("gone"))
	if _, _, err := r.svc.Decrypt(epoch, ct); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("decrypt with no device: %v", err)
	}
}

// Commit leaves the new epoch's commit_event empty until the homeserver
// has answered; the outgoing commit names its base's. Nothing of the
// rules depends on commit events: a member that never learns them
// chooses the same base, heads, plan and expiry as one that does.
func TestMemberCommitEventLater(t *testing.T) {
	ms, room := memberRoom(t, 3)
	out, err := ms[1].Commit(ms[1].Self, room, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if out.Commit.EventID != "" || out.Commit.BaseEvent != "$c0" {
		t.Fatalf("commit event %q, base event %q", out.Commit.EventID, out.Commit.BaseEvent)
	}
	if n, _ := ms[1].Graph().Node(out.Commit.Epoch); n.CommitEvent != "" {
		t.Fatalf("commit event known before sending: %q", n.CommitEvent)
	}
	// A commit on an epoch whose event is not known yet names none.
	next, err := ms[1].Commit(ms[1].Self, room, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if next.Commit.BaseEvent != "" {
		t.Fatalf("base event %q before it is known", next.Commit.BaseEvent)
	}
	if err := ms[1].SetCommitEvent(out.Commit.Epoch, "$sent"); err != nil {
		t.Fatal(err)
	}
	if err := ms[1].SetCommitEvent(out.Commit.Epoch, "$sent"); err != nil {
		t.Fatalf("same id again: %v", err)
	}
	if err := ms[1].SetCommitEvent(out.Commit.Epoch, "$other"); !errors.Is(err, ErrCommitEvent) {
		t.Fatalf("another id: %v", err)
	}
	if err := ms[1].SetCommitEvent("unknown", "$x"); !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("unknown epoch: %v", err)
	}
	if n, _ := ms[1].Graph().Node(out.Commit.Epoch); n.CommitEvent != "$sent" {
		t.Fatalf("commit event %q", n.CommitEvent)
	}

	// Two receivers of the same commits (a fork, then more), one told
	// the events' ids and one never.
	a := ms[1].commit(t, room, nil, "$a", t0.Add(time.Second))
	b := ms[2].commit(t, room, nil, "$b", t0.Add(2*time.Second))
	told, blind := ms[0], one{}
	enc, err := ms[0].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if blind.Member, err = UnmarshalMember(enc, dmlsConfig); err != nil {
		t.Fatal(err)
	}
	for i, c := range []Commit{out.Commit, next.Commit, a.Commit, b.Commit} {
		now := t0.Add(time.Duration(i) * time.Second)
		c.EventID = fmt.Sprintf("$%d", i)
		if _, err := told.Apply(c, room, room, now); err != nil && !errors.Is(err, ErrUnknownEpoch) {
			t.Fatal(err)
		}
		c.EventID = ""
		if _, err := blind.Apply(c, room, room, now); err != nil && !errors.Is(err, ErrUnknownEpoch) {
			t.Fatal(err)
		}
	}
	if !slices.Equal(told.Graph().Heads(), blind.Graph().Heads()) || len(told.Graph().Heads()) != 2 {
		t.Fatalf("heads %v and %v", told.Graph().Heads(), blind.Graph().Heads())
	}
	room.Members["@u2:x"] = Leave
	rt, _ := told.Graph().NextCommit(room)
	rb, _ := blind.Graph().NextCommit(room)
	if rt.Base != rb.Base || !slices.Equal(rt.Resolves, rb.Resolves) || !slices.Equal(rt.Remove, rb.Remove) || !slices.Equal(rt.Add, rb.Add) {
		t.Fatalf("plans differ: %+v and %+v", rt, rb)
	}
	p := Policy{MaxEpochs: 2, MaxAge: time.Second}
	if et, eb := told.Graph().Expired(p, t0.Add(time.Hour)), blind.Graph().Expired(p, t0.Add(time.Hour)); !slices.Equal(et, eb) {
		t.Fatalf("expiry differs: %v and %v", et, eb)
	}
}

// A commit that removes every device of ours and adds another: the
// branch is recorded without a state, and the new device's Welcome holds
// the epoch it made.
func TestMemberRemovedAndAddedAgain(t *testing.T) {
	x, y := dev("@x:x", "X"), dev("@y:x", "Y")
	r := newServiceRoom(t, 3, x)
	r.room.Members[x.UserID] = Leave
	r.room.Members[y.UserID] = Join
	r.room.Devices[y.UserID] = []string{y.DeviceID}
	out := r.commit(r.indep[0])
	if !slices.Equal(out.Removed, []Device{x}) || !slices.Equal(out.Added, []Device{y}) {
		t.Fatalf("removed %v, added %v", out.Removed, out.Added)
	}
	if _, err := r.apply(out.Commit); !errors.Is(err, ErrRemoved) {
		t.Fatalf("apply: %v", err)
	}
	if n, ok := r.svc.Graph().Node(out.Commit.Epoch); !ok || n.Retained {
		t.Fatal("the branch is not recorded as metadata")
	}
	if _, err := r.svc.Join(y, out.Welcome, r.bundles[y], out.Commit, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.RemoveDevice(x); err != nil {
		t.Fatal(err)
	}
	r.agree(y)
	if _, err := r.apply(r.commit(r.indep[1]).Commit); err != nil {
		t.Fatal(err)
	}
	r.agree(y)
}

// A Welcome on the wire carries no commit message (groups.ParseWelcome):
// when it arrives before the commit event, the device it adds enters the
// epoch alone, and the commit event must then bring our devices of the
// base in (follow, with the event's message). A message that does not
// lead from the base to that epoch is refused and not kept, and the real
// one still works after it.
func TestMemberWelcomeWithoutCommitFirst(t *testing.T) {
	a, b := dev("@a:x", "A"), dev("@b:x", "B")
	r := newServiceRoom(t, 4, a)
	r.agree(a)

	// A copy of another member, left on the base.
	enc, err := r.indep[2].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	stay := one{Self: r.indep[2].Self}
	if stay.Member, err = UnmarshalMember(enc, dmlsConfig); err != nil {
		t.Fatal(err)
	}

	out := r.welcomeFirst(b)
	if got := r.svc.Holders(out.Commit.Epoch); !slices.Equal(got, []Device{b}) {
		t.Fatalf("holders after the Welcome: %v", got)
	}
	if got := r.svc.Behind(); !slices.Equal(got, []ID{out.Commit.Epoch}) {
		t.Fatalf("behind after the Welcome: %v, want the Welcome's epoch", got)
	}

	// Another commit on the same base, in an event that claims b's epoch.
	other := stay.commit(t, r.room, r.kps, "$other", t0)
	if other.Commit.Base != out.Commit.Base {
		t.Fatal("the other commit is not on the same base")
	}
	forged := other.Commit
	forged.Epoch, forged.Number = out.Commit.Epoch, out.Commit.Number
	if _, err := r.apply(forged); !errors.Is(err, ErrInvalidCommit) {
		t.Fatalf("a commit that does not make the epoch: %v", err)
	}
	if got := r.svc.Holders(out.Commit.Epoch); !slices.Equal(got, []Device{b}) {
		t.Fatalf("holders after the forged commit: %v", got)
	}

	if got, err := r.apply(out.Commit); err != nil || got != out.Commit.Epoch {
		t.Fatalf("the commit after its Welcome: %v %v", got, err)
	}
	if got := r.svc.Holders(out.Commit.Epoch); !slices.Equal(got, sortedDevices([]Device{a, b})) {
		t.Fatalf("holders after the commit: %v", got)
	}
	if got := r.svc.Behind(); len(got) != 0 {
		t.Fatalf("behind after the commit: %v", got)
	}
	if _, err := r.apply(out.Commit); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("the commit again: %v", err)
	}
	r.agree(a, b)
}

// TestMemberWelcomeStoredBeforeCommit: as above, with the Member stored
// and loaded again between the Welcome and the commit, as the service
// does between two work items. The loaded Member holds the joined epoch's
// metadata only; the commit lent to it must survive the epoch's loading,
// or a stays behind in the base (the federated test's orphan cycle).
func TestMemberWelcomeStoredBeforeCommit(t *testing.T) {
	a, b := dev("@a:x", "A"), dev("@b:x", "B")
	r := newServiceRoom(t, 4, a)
	r.agree(a)
	r.room.Members[b.UserID] = Join
	r.room.Devices[b.UserID] = []string{b.DeviceID}
	out := r.commit(r.indep[1])
	wire := out.Commit
	wire.Message = nil
	if _, err := r.svc.Join(b, out.Welcome, r.bundles[b], wire, t0); err != nil {
		t.Fatal(err)
	}
	s := newStore()
	s.write(t, flush(t, r.svc))
	r.svc = s.member(t)
	if got, err := r.apply(out.Commit); err != nil || got != out.Commit.Epoch {
		t.Fatalf("the commit after its Welcome, on the loaded Member: %v %v", got, err)
	}
	if got := r.svc.Holders(out.Commit.Epoch); !slices.Equal(got, sortedDevices([]Device{a, b})) {
		t.Fatalf("holders after the commit: %v", got)
	}
	s.write(t, flush(t, r.svc))
	r.svc = s.member(t)
	r.agree(a, b)
}

// TestMemberUnreached: a commit adds our b and another our c, and b's
// Welcome never comes (Synapse loses a few of the to-device messages sent
// to an application service at once). c enters the second epoch by its
// Welcome; a, in the base, is cut off from it by the first commit, which
// has not reached us (Unreached). Once it has, a is in the first epoch,
// behind in the second (Behind), and that one's commit takes a on; b stays
// an orphan, the only one.
func TestMemberUnreached(t *testing.T) {
	a, b, c := dev("@a:x", "A"), dev("@b:x", "B"), dev("@c:x", "C")
	r := newServiceRoom(t, 4, a)
	r.agree(a)
	if got := r.svc.Unreached(); len(got) != 0 {
		t.Fatalf("unreached at the start: %v", got)
	}

	r.room.Members[b.UserID] = Join
	r.room.Devices[b.UserID] = []string{b.DeviceID}
	first := r.commit(r.indep[1])
	second := r.welcomeFirst(c)
	if got := r.svc.Unreached(); !slices.Equal(got, []ID{second.Commit.Epoch}) {
		t.Fatalf("unreached after c's Welcome: %v, want its epoch", got)
	}
	if got := r.svc.Behind(); len(got) != 0 {
		t.Fatalf("behind before the first commit: %v", got)
	}

	if _, err := r.apply(first.Commit); err != nil {
		t.Fatal(err)
	}
	if got := r.svc.Unreached(); len(got) != 0 {
		t.Fatalf("unreached after the first commit: %v", got)
	}
	if got := r.svc.Behind(); !slices.Equal(got, []ID{second.Commit.Epoch}) {
		t.Fatalf("behind after the first commit: %v, want the second epoch", got)
	}
	if _, err := r.apply(second.Commit); err != nil {
		t.Fatal(err)
	}
	if got := r.svc.Behind(); len(got) != 0 {
		t.Fatalf("behind after the second commit: %v", got)
	}
	if got := r.svc.Holders(second.Commit.Epoch); !slices.Equal(got, sortedDevices([]Device{a, c})) {
		t.Fatalf("holders of the second epoch: %v, want a and c (b's Welcome never came)", got)
	}
}

// Our own commit counts for retention's settled rule once its event came
// back and the room accepted it (Confirm): before that it could still be
// withdrawn, and our device that did not make it must keep the base to
// go back to; after, the base goes once the other members moved on, and
// the commit can no longer be withdrawn. What is stored keeps it.
func TestConfirmedOwnCommitSettles(t *testing.T) {
	a, b := dev("@a:x", "A"), dev("@b:x", "B")
	r := newServiceRoom(t, 1, a, b)
	base, _ := r.svc.Base()
	now := t0.Add(time.Second)
	mine, err := r.svc.Commit(a, r.room, r.kps, now)
	if err != nil {
		t.Fatal(err)
	}
	next := mine.Commit.Epoch
	u0 := r.indep[0]
	if _, err := u0.Apply(mine.Commit, r.room, r.room, now); err != nil {
		t.Fatal(err)
	}
	// u0 moves on by speaking in the new epoch; a made the commit.
	epoch, ct, err := u0.Encrypt(u0.Self, []byte("hello"))
	if err != nil || epoch != next {
		t.Fatalf("u0 sends in %v: %v", epoch, err)
	}
	if _, _, err := r.svc.Decrypt(epoch, ct); err != nil {
		t.Fatal(err)
	}
	retained := func() bool { t.Helper(); return r.retains(base, now) }
	if !retained() {
		t.Fatal("the base went while our own commit could still be withdrawn")
	}

	if _, err := r.apply(mine.Commit); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("our own echo: %v", err)
	}
	if r.svc.Confirm(base) {
		t.Fatal("an epoch another member made confirmed as our commit's")
	}
	if !r.svc.Confirm(next) || r.svc.Confirm(next) {
		t.Fatal("Confirm does not report news once")
	}
	enc, err := r.svc.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalMember(enc, dmlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := back.Graph().Node(next); !n.Echoed {
		t.Fatal("confirmation lost in the stored Member")
	}
	if _, err := r.svc.Withdraw(next); !errors.Is(err, ErrEchoed) {
		t.Fatalf("withdrawing a confirmed commit: %v", err)
	}
	if retained() {
		t.Fatal("the base stays though every member moved on for good")
	}
}

// What our devices do above a commit of ours that may still be withdrawn
// shows no move for good: a withdrawal takes them back to its base. Here
// our commit removes the only other member (who left), and our other
// device speaks in the new epoch: every member looks moved on, but until
// the commit is confirmed the base stays, so that Withdraw still has it
// to go back to.
func TestTentativeOwnCommitKeepsItsBase(t *testing.T) {
	a, b := dev("@a:x", "A"), dev("@b:x", "B")
	r := newServiceRoom(t, 1, a, b)
	base, _ := r.svc.Base()
	r.room.Members[r.indep[0].Self.UserID] = Leave
	now := t0.Add(time.Second)
	mine, err := r.svc.Commit(a, r.room, r.kps, now)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(r.svc.Devices(mine.Commit.Epoch), r.indep[0].Self) {
		t.Fatal("the commit keeps the member who left")
	}
	if _, _, err := r.svc.Encrypt(b, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	retained := func() bool { t.Helper(); return r.retains(base, now) }
	if !retained() {
		t.Fatal("the base went while our commit on it could still be withdrawn")
	}
	if _, err := r.svc.Effect(mine.Commit.Epoch); err != nil {
		t.Fatalf("the commit can no longer be checked for withdrawal: %v", err)
	}
	r.svc.Confirm(mine.Commit.Epoch)
	if retained() {
		t.Fatal("the base stays after our commit on it was confirmed")
	}
}

// retains runs the service's retention at now and reports whether it
// keeps epoch id.
func (r *serviceRoom) retains(id ID, now time.Time) bool {
	r.t.Helper()
	if _, err := r.svc.Retain(now); err != nil {
		r.t.Fatal(err)
	}
	n, ok := r.svc.Graph().Node(id)
	return ok && n.Retained
}

// Our own commit that adds devices of ours makes them ours in the new
// epoch at once (CommitJoining): they hold it and can send and read
// without opening the Welcome, which then finds them there already; an
// added remote device joins by the Welcome as ever. A bundle given for
// the wrong device fails the commit.
func TestCommitJoiningOurDevices(t *testing.T) {
	a, b := dev("@a:x", "A"), dev("@b:x", "B")
	r := newServiceRoom(t, 4, a)
	r.agree(a)
	a2, b1, remote := dev("@a:x", "A2"), b, dev("@r:x", "R")
	for _, d := range []Device{a2, b1, remote} {
		r.room.Members[d.UserID] = Join
		r.room.Devices[d.UserID] = append(r.room.Devices[d.UserID], d.DeviceID)
	}
	ours := func(d Device) *group.KeyPackageBundle {
		if d == remote {
			return nil
		}
		return r.bundles[d]
	}
	swapped := func(d Device) *group.KeyPackageBundle {
		switch d {
		case a2:
			return r.bundles[b1]
		case b1:
			return r.bundles[a2]
		}
		return nil
	}
	// The KeyPackages are made as the commit asks for them: the bundles
	// of this attempt are in r.bundles by the time joiners is asked.
	if _, err := r.svc.CommitJoining(a, r.room, r.kps, swapped, t0); err == nil {
		t.Fatal("a commit with swapped bundles succeeded")
	}
	mine, err := r.svc.CommitJoining(a, r.room, r.kps, ours, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sortedDevices(mine.Joined), sortedDevices([]Device{a2, b1})) || len(mine.Added) != 3 {
		t.Fatalf("added %v, joined %v", mine.Added, mine.Joined)
	}
	for _, o := range r.indep {
		if _, err := o.Apply(mine.Commit, r.room, r.room, t0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.svc.Join(a2, mine.Welcome, r.bundles[a2], mine.Commit, t0); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("a joined device opening the Welcome: %v", err)
	}
	r.agree(a, a2, b1)
}
