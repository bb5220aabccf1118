package epochs

import (
	"errors"
	"slices"
	"testing"
)

func room(members map[string]MemberState) Room { return Room{Members: members} }

func TestCheckCommit(t *testing.T) {
	dave := dev("@dave:x", "D1")
	joined := map[string]MemberState{alice.UserID: Join, bob.UserID: Join, carol.UserID: Join}
	with := func(user string, s MemberState) map[string]MemberState {
		m := map[string]MemberState{}
		for k, v := range joined {
			m[k] = v
		}
		m[user] = s
		return m
	}
	tests := []struct {
		name             string
		effect           CommitEffect
		atCommit, atBase map[string]MemberState
		want             error
		device           Device
	}{
		{"add joined", CommitEffect{Added: []Device{dave}, After: []Device{alice, dave}}, with(dave.UserID, Join), joined, nil, Device{}},
		{"add invited", CommitEffect{Added: []Device{dave}, After: []Device{alice, dave}}, with(dave.UserID, Invite), joined, nil, Device{}},
		{"add never joined", CommitEffect{Added: []Device{dave}, After: []Device{alice, dave}}, joined, joined, ErrUnauthorisedAdd, dave},
		{"add left", CommitEffect{Added: []Device{dave}}, with(dave.UserID, Leave), joined, ErrUnauthorisedAdd, dave},
		{"add banned", CommitEffect{Added: []Device{dave}}, with(dave.UserID, Ban), joined, ErrUnauthorisedAdd, dave},
		{"add knocking", CommitEffect{Added: []Device{dave}}, with(dave.UserID, Knock), joined, ErrUnauthorisedAdd, dave},
		{"remove the leaver", CommitEffect{Removed: []Device{bob}, After: []Device{alice, carol}}, with(bob.UserID, Leave), with(bob.UserID, Leave), nil, Device{}},
		{"leaver left in, removal due", CommitEffect{After: []Device{alice, bob, carol}}, with(bob.UserID, Leave), with(bob.UserID, Leave), ErrStaleMember, bob},
		{"banned left in, removal due", CommitEffect{After: []Device{alice, bob}}, with(bob.UserID, Ban), with(bob.UserID, Ban), ErrStaleMember, bob},
		{"leaver left in, left after the base", CommitEffect{After: []Device{alice, bob, carol}}, with(bob.UserID, Leave), joined, nil, Device{}},
		{"resolving commit must reconcile", CommitEffect{After: []Device{alice, bob, carol}, Resolving: true}, with(bob.UserID, Leave), joined, ErrStaleMember, bob},
		{"rejoined user kept", CommitEffect{After: []Device{alice, bob}}, joined, with(bob.UserID, Leave), nil, Device{}},
		{"invited member kept", CommitEffect{After: []Device{alice, bob}, Resolving: true}, with(bob.UserID, Invite), with(bob.UserID, Invite), nil, Device{}},
		{"adds reported before stale members", CommitEffect{Added: []Device{dave}, After: []Device{alice, bob, dave}},
			with(bob.UserID, Leave), with(bob.UserID, Leave), ErrUnauthorisedAdd, dave},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckCommit(tt.effect, room(tt.atCommit), room(tt.atBase))
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if err == nil {
				return
			}
			var rej *Rejection
			if !errors.As(err, &rej) || rej.Device != tt.device {
				t.Fatalf("rejection %#v, want device %v", err, tt.device)
			}
			if rej.Error() == "" {
				t.Fatal("empty message")
			}
		})
	}
}

func TestPlanMembership(t *testing.T) {
	alice2 := dev(alice.UserID, "A2")
	dave := dev("@dave:x", "D1")
	r := Room{
		Members: map[string]MemberState{alice.UserID: Join, bob.UserID: Leave, carol.UserID: Invite, dave.UserID: Join},
		Devices: map[string][]string{
			alice.UserID: {"A2"}, // A1 was deleted
			carol.UserID: {"C1", "C2"},
			dave.UserID:  {"D1"},
		},
	}
	// Invited users' devices are added as joined users' are: carol's
	// second device joins the group while she is invited.
	carol2 := dev(carol.UserID, "C2")
	p := PlanMembership([]Device{alice, bob, carol}, r)
	if want := []Device{alice2, carol2, dave}; !slices.Equal(p.Add, want) {
		t.Errorf("add %v, want %v", p.Add, want)
	}
	if want := []Device{alice, bob}; !slices.Equal(p.Remove, want) {
		t.Errorf("remove %v, want %v", p.Remove, want)
	}
	if p.Empty() {
		t.Error("Empty")
	}
	// Users who knocked, left or were banned get nothing.
	for _, st := range []MemberState{Knock, Leave, Ban, ""} {
		p = PlanMembership(nil, Room{Members: map[string]MemberState{dave.UserID: st}, Devices: r.Devices})
		if !p.Empty() {
			t.Errorf("%q: plan %+v", st, p)
		}
	}
	// Unknown device lists keep present devices and add nothing.
	p = PlanMembership([]Device{alice}, Room{Members: map[string]MemberState{alice.UserID: Join}})
	if !p.Empty() {
		t.Errorf("plan %+v", p)
	}
}

func TestNextCommit(t *testing.T) {
	g := build(t, spec{id: "R"}, spec{id: "A", parent: "R", tag: 1}, spec{id: "B", parent: "R", tag: 2})
	r := Room{Members: map[string]MemberState{alice.UserID: Join, bob.UserID: Join, carol.UserID: Leave}}
	c, err := g.NextCommit(r)
	if err != nil {
		t.Fatal(err)
	}
	if c.Base != "B" || !slices.Equal(c.Resolves, ids("A")) || !slices.Equal(c.Remove, []Device{carol}) || len(c.Add) != 0 {
		t.Fatalf("%+v", c)
	}
}
