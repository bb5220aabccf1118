package epochs

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// A member that committed before it saw a leave, and built on that
// commit, takes both back once the room refuses the first; it then
// commits again from the base, and the others, who refused the first,
// apply the new commit: one branch again.
func TestMemberWithdrawsRefusedOwnCommit(t *testing.T) {
	ms, room := memberRoom(t, 3)
	a, b := ms[0], ms[1]
	base, _ := a.Base()
	after := Room{Members: maps.Clone(room.Members), Devices: room.Devices}
	after.Members[ms[2].Self.UserID] = Leave

	// a's homeserver already had the leave; a had not seen it.
	stale := a.commit(t, room, nil, "$stale", t0.Add(time.Second))
	above := a.commit(t, after, nil, "$above", t0.Add(2*time.Second))
	if _, err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(stale.Commit, after, after, t0); !errors.Is(err, ErrStaleMember) {
		t.Fatalf("b applied the stale commit: %v", err)
	}

	// a checks its own commit as b did, and withdraws it.
	effect, err := a.Effect(stale.Commit.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCommit(effect, after, after); !errors.Is(err, ErrStaleMember) {
		t.Fatalf("own commit's effect passes the check b refused it by: %v (%+v)", err, effect)
	}
	gone, err := a.Withdraw(stale.Commit.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if want := []ID{stale.Commit.Epoch, above.Commit.Epoch}; !slices.Equal(gone, want) {
		t.Fatalf("withdrew %v, want %v", gone, want)
	}
	if h := a.Graph().Heads(); !slices.Equal(h, []ID{base}) {
		t.Fatalf("heads %v after withdrawing, want the base %v", h, base)
	}
	if !a.Refused(stale.Commit.Epoch) || !a.Refused(above.Commit.Epoch) || a.Refused(base) {
		t.Fatal("withdrawn epochs not counted as refused")
	}
	if n, _ := a.Graph().Node(base); !n.Superseded.IsZero() {
		t.Fatalf("the base is a head again but superseded at %v", n.Superseded)
	}
	ch, err := a.Flush()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ch.Dropped)
	want := []ID{stale.Commit.Epoch, above.Commit.Epoch}
	slices.Sort(want)
	if !slices.Equal(ch.Dropped, want) || ch.Metadata == nil {
		t.Fatalf("flush after withdrawing: dropped %v (want %v), metadata written %v", ch.Dropped, want, ch.Metadata != nil)
	}
	if _, err := a.Apply(stale.Commit, after, after, t0); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("the withdrawn commit's event again: %v", err)
	}

	// From the base again: b applies it, and both are in the same epoch.
	again := a.commit(t, after, nil, "$again", t0.Add(3*time.Second))
	if slices.Contains(a.Devices(again.Commit.Epoch), ms[2].Self) {
		t.Fatal("the new commit leaves in the user who left")
	}
	if _, err := b.Apply(again.Commit, after, after, t0); err != nil {
		t.Fatal(err)
	}
	if ha, hb := a.Graph().Heads(), b.Graph().Heads(); !slices.Equal(ha, hb) || len(ha) != 1 {
		t.Fatalf("heads differ: a %v, b %v", ha, hb)
	}

	// What a stored Member reloads has no trace of the withdrawn epochs.
	enc, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := UnmarshalMember(enc, dmlsConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range gone {
		if _, ok := back.Graph().Node(id); ok || !back.Refused(id) {
			t.Fatalf("withdrawn epoch %v reloaded (%v) or no longer refused", id, ok)
		}
	}
}

// Withdraw needs the parent to go back to, and an epoch to take back.
func TestMemberWithdrawNeedsRetainedParent(t *testing.T) {
	ms, _ := memberRoom(t, 2)
	base, _ := ms[0].Base()
	if _, err := ms[0].Withdraw("unknown"); !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("unknown epoch: %v", err)
	}
	// The group's first epochs were joined or created: no parent held.
	if _, err := ms[1].Withdraw(base); !errors.Is(err, ErrParentNotRetained) {
		t.Fatalf("epoch joined by Welcome: %v", err)
	}
}

// Remove takes a whole subtree, reopens the heads it had retired, and
// leaves the rest of the graph as it was.
func TestGraphRemoveSubtree(t *testing.T) {
	g := build(t,
		spec{id: "r", tag: 1},
		spec{id: "x", parent: "r", tag: 2},
		spec{id: "y", parent: "r", tag: 3},
		spec{id: "x2", parent: "x", tag: 4, resolves: []string{"y"}},
		spec{id: "x3", parent: "x2", tag: 5},
	)
	var destroyed []ID
	gone, err := g.Remove("x2", func(id ID, _ string) { destroyed = append(destroyed, id) })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gone, ids("x2", "x3")) || !slices.Equal(destroyed, gone) {
		t.Fatalf("removed %v, destroyed %v", gone, destroyed)
	}
	heads := g.Heads()
	slices.Sort(heads)
	if !slices.Equal(heads, ids("x", "y")) {
		t.Fatalf("heads %v, want x and y (x2 resolved y)", heads)
	}
	for _, h := range heads {
		if n, _ := g.Node(h); !n.Superseded.IsZero() {
			t.Fatalf("head %v still superseded", h)
		}
	}
	if n, _ := g.Node("r"); n.Superseded.IsZero() {
		t.Fatal("r is no head and must stay superseded")
	}
	if _, err := g.Remove("x2", nil); !errors.Is(err, ErrUnknownEpoch) {
		t.Fatalf("removing again: %v", err)
	}
}

// A Welcome into an epoch whose commit the member refused is refused in
// either order: after the commit (ErrRefusedEpoch), or before it, when
// the commit's arrival takes the epoch away again.
func TestMemberRefusesWelcomeIntoRefusedEpoch(t *testing.T) {
	ours2 := Device{"@late:x", "L2"}
	for _, welcomeFirst := range []bool{false, true} {
		ms, room := memberRoom(t, 3)
		kp := newKP(t, ours2)
		out, err := ms[1].CommitProposals(ms[1].Self, []*message.Proposal{group.AddProposal(&kp.KeyPackage)})
		if err != nil {
			t.Fatal(err)
		}
		out.Commit.EventID = "$unauthorised"
		a := ms[0]
		base, _ := a.Base()
		if welcomeFirst {
			if _, err := a.Join(ours2, out.Welcome, kp, out.Commit, t0); err != nil {
				t.Fatal(err)
			}
		}
		// @late:x is neither joined nor invited: the add is refused.
		if _, err := a.Apply(out.Commit, room, room, t0); !errors.Is(err, ErrUnauthorisedAdd) {
			t.Fatalf("welcome first %v: commit applied: %v", welcomeFirst, err)
		}
		if !welcomeFirst {
			if _, err := a.Join(ours2, out.Welcome, kp, out.Commit, t0); !errors.Is(err, ErrRefusedEpoch) {
				t.Fatalf("welcome after the refusal: %v", err)
			}
		}
		if h := a.Graph().Heads(); !slices.Equal(h, []ID{base}) || slices.Contains(a.Ours(), ours2) {
			t.Fatalf("welcome first %v: heads %v, ours %v", welcomeFirst, h, a.Ours())
		}
		// The refusal is stored with the member.
		enc, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalMember(enc, dmlsConfig)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := back.Join(ours2, out.Welcome, kp, out.Commit, t0); !errors.Is(err, ErrRefusedEpoch) {
			t.Fatalf("welcome first %v: reloaded member joined the refused epoch: %v", welcomeFirst, err)
		}
	}
}

// Metadata of versions 1 (before refused epochs were kept), 2 (before
// the linger was) and 3 (before holders were a bitmap) still loads;
// version 4 keeps the whole policy and the same holders.
func TestMemberMetadataOldVersions(t *testing.T) {
	ms, _ := memberRoom(t, 2)
	policy := Policy{MaxEpochs: 5, MaxAge: time.Hour, Linger: time.Minute}
	ms[0].Policy = policy
	current, err := ms[0].marshalMetadata()
	if err != nil {
		t.Fatal(err)
	}
	held := func(m *Member) [][]Device {
		var ids []ID
		for id, n := range m.graph.nodes {
			if n.Retained {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		var out [][]Device
		for _, id := range ids {
			out = append(out, m.graph.nodes[id].State.holders)
		}
		return out
	}
	if current[0] != 4 {
		t.Fatalf("metadata version %d, want 4", current[0])
	}
	m4, err := LoadMember(current, dmlsConfig, nil)
	if err != nil || m4.Policy != policy {
		t.Fatalf("version 4: policy %+v, %v", m4.Policy, err)
	}
	want := held(ms[0].Member)
	if len(want) == 0 || len(want[0]) == 0 || !slices.EqualFunc(held(m4), want, slices.Equal) {
		t.Fatalf("version 4 holders %v, want %v", held(m4), want)
	}
	meta, err := ms[0].marshalMetadataAs(3)
	if err != nil {
		t.Fatal(err)
	}
	// Version 3: the version, two uint64s, the linger, ...; it ends with
	// the empty refused vector (one byte).
	if meta[0] != 3 || meta[len(meta)-1] != 0 {
		t.Fatalf("metadata layout: version %d, last byte %d", meta[0], meta[len(meta)-1])
	}
	if m, err := LoadMember(meta, dmlsConfig, nil); err != nil || m.Policy != policy || !slices.EqualFunc(held(m), want, slices.Equal) {
		t.Fatalf("version 3: policy %+v, %v", m.Policy, err)
	}
	v2 := append([]byte{2}, meta[1:17]...)
	v2 = append(v2, meta[25:]...)
	m, err := LoadMember(v2, dmlsConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Policy != (Policy{MaxEpochs: 5, MaxAge: time.Hour}) || m.Graph().Len() != ms[0].Graph().Len() {
		t.Fatalf("version 2: policy %+v, %d epochs", m.Policy, m.Graph().Len())
	}
	v1 := append([]byte{1}, v2[1:len(v2)-1]...)
	m, err = LoadMember(v1, dmlsConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Graph().Len() != ms[0].Graph().Len() || len(m.refused) != 0 {
		t.Fatal("version 1 metadata lost the graph")
	}
	if _, err := LoadMember(append([]byte{5}, current[1:]...), dmlsConfig, nil); err == nil {
		t.Fatal("version 5 accepted")
	}
	if _, err := LoadMember(append([]byte{0}, current[1:]...), dmlsConfig, nil); err == nil {
		t.Fatal("version 0 accepted")
	}
}

// A Welcome made two commits above a refused one is refused too, and a
// commit built on the refused epoch is refused at once instead of
// waiting for a base that never comes; an epoch entered by such a Welcome
// before the way down was known goes once it is. (Soak seed 15: a new
// device joined by the Welcome of a withdrawn branch's third commit and
// committed on it.)
func TestMemberRefusesWhatBuildsOnRefused(t *testing.T) {
	ours2 := Device{"@late:x", "L2"}
	evil := Device{"@evil:x", "E"}
	none := func(Device) *message.KeyPackage { return nil }
	for _, welcomeFirst := range []bool{false, true} {
		ms, room := memberRoom(t, 3)
		a, forger := ms[0], ms[1]
		base, _ := a.Base()
		// The forger's room has evil invited; a's has not.
		forged := Room{Members: maps.Clone(room.Members), Devices: maps.Clone(room.Devices)}
		forged.Members[evil.UserID] = Invite
		forged.Devices[evil.UserID] = []string{evil.DeviceID}
		bad := forger.commit(t, forged, func(d Device) *message.KeyPackage { return &newKP(t, d).KeyPackage }, "$bad", t0)
		mid := forger.commit(t, forged, none, "$mid", t0)
		forged.Members[ours2.UserID] = Join
		forged.Devices[ours2.UserID] = []string{ours2.DeviceID}
		kp := newKP(t, ours2)
		top := forger.commit(t, forged, func(d Device) *message.KeyPackage {
			if d == ours2 {
				return &kp.KeyPackage
			}
			return nil
		}, "$top", t0)
		if mid.Commit.Base != bad.Commit.Epoch || top.Commit.Base != mid.Commit.Epoch || top.Welcome == nil {
			t.Fatal("the forger's chain is not bad, mid, top")
		}
		if welcomeFirst {
			// The Welcome before anything else: a new root.
			if _, err := a.Join(ours2, top.Welcome, kp, top.Commit, t0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.Apply(bad.Commit, room, room, t0); !errors.Is(err, ErrUnauthorisedAdd) {
			t.Fatalf("welcome first %v: bad commit: %v", welcomeFirst, err)
		}
		if _, err := a.Apply(mid.Commit, room, room, t0); !errors.Is(err, ErrParentNotRetained) {
			t.Fatalf("welcome first %v: commit on the refused epoch: %v", welcomeFirst, err)
		}
		if !welcomeFirst {
			if _, err := a.Join(ours2, top.Welcome, kp, top.Commit, t0); !errors.Is(err, ErrRefusedEpoch) {
				t.Fatalf("welcome two commits above the refused one: %v", err)
			}
		}
		if h := a.Graph().Heads(); !slices.Equal(h, []ID{base}) || slices.Contains(a.Ours(), ours2) {
			t.Fatalf("welcome first %v: heads %v (want %v), ours %v", welcomeFirst, h, base, a.Ours())
		}
	}
}

// The event of our own commit can come back after retention dropped and
// forgot both its base and its epoch (the count bound, while the service
// was behind on its room's events). It is a duplicate, not a commit on an
// epoch not retained: the service made it, and a refusal would be a
// warning and a rejection counted for nothing. Another member's commit on
// such an epoch is still refused.
func TestOwnCommitAfterItsEpochsWentIsDuplicate(t *testing.T) {
	ms, room := memberRoom(t, 2)
	a := ms[0]
	a.Policy = Policy{MaxEpochs: 1}
	first := a.commit(t, room, nil, "$first", t0.Add(time.Second))
	for i := range 3 {
		a.commit(t, room, nil, fmt.Sprintf("$next%d", i), t0.Add(time.Duration(2+i)*time.Second))
	}
	if _, err := a.Retain(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Graph().Node(first.Commit.Base); ok {
		t.Fatal("the first commit's base is still known: the test needs it forgotten")
	}
	if _, err := a.Apply(first.Commit, room, room, t0.Add(time.Minute)); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("our own commit's late event: %v, want ErrDuplicateCommit", err)
	}
	other := first.Commit
	other.Creator = ms[1].Self
	if _, err := a.Apply(other, room, room, t0.Add(time.Minute)); !errors.Is(err, ErrParentNotRetained) {
		t.Fatalf("another member's commit on a forgotten epoch: %v, want ErrParentNotRetained", err)
	}
}
