package groups

import (
	"encoding/json"
	"testing"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
)

// TestMembersAtWithoutRecords: the membership at an event counts the
// membership events whose records retention deleted (or that no
// transaction carried) as applied before it. Before, a member who joined
// longer ago than processing.retention was missing from the membership at
// every later event, and a commit on a base made after her leave looked
// stale: refused until the room's graph was asked.
func TestMembersAtWithoutRecords(t *testing.T) {
	h := newHarness(t, harnessOptions{Quiet: true})
	const room = "!members:example.org"
	record := func(eventID, user, membership string) {
		t.Helper()
		if err := database.RecordEvent(h.ctx, h.db, 0, database.InboundEvent{Kind: "room", Type: "m.room.member",
			RoomID: room, EventID: eventID, Raw: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		if user != "" {
			if err := database.SetMembership(h.ctx, h.db, database.MemberEvent{RoomID: room, EventID: eventID, UserID: user,
				Membership: membership}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// alice joined long ago: her event's record is gone, her membership
	// row stays (retention keeps a member's current event).
	record("$alice-join", "@alice:example.org", "join")
	if _, err := h.db.Exec(h.ctx, `DELETE FROM inbound_event WHERE event_id = '$alice-join'`); err != nil {
		t.Fatal(err)
	}
	record("$bob-join", "@bob:example.org", "join")
	// dave joined, and the audit later found his leave, which Synapse
	// never sent: no record, applied after his join.
	record("$dave-join", "@dave:example.org", "join")
	if err := database.SetMembership(h.ctx, h.db, database.MemberEvent{RoomID: room, EventID: "$dave-leave",
		UserID: "@dave:example.org", Membership: "leave"}); err != nil {
		t.Fatal(err)
	}
	record("$commit", "", "")
	record("$bob-leave", "@bob:example.org", "leave")
	// carol's join came from the room's state after the commit, with no
	// record: not yet applied at the commit.
	if err := database.SetMembership(h.ctx, h.db, database.MemberEvent{RoomID: room, EventID: "$carol-join",
		UserID: "@carol:example.org", Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Exec(h.ctx, `UPDATE room_member_event SET recorded_at = now() + interval '1 minute' WHERE event_id = '$carol-join'`); err != nil {
		t.Fatal(err)
	}

	got, known, err := membersAt(h.ctx, h.db, room, "$commit")
	if err != nil || !known {
		t.Fatalf("membership at the commit: known %v, %v", known, err)
	}
	want := map[string]epochs.MemberState{"@alice:example.org": epochs.Join, "@bob:example.org": epochs.Join,
		"@dave:example.org": epochs.Leave}
	if len(got) != len(want) {
		t.Fatalf("membership at the commit %v, want %v", got, want)
	}
	for u, m := range want {
		if got[u] != m {
			t.Fatalf("membership at the commit %v, want %v", got, want)
		}
	}
	if _, known, err := membersAt(h.ctx, h.db, room, "$unrecorded"); err != nil || known {
		t.Fatalf("an event without a record: known %v, %v", known, err)
	}
}

// TestJoinSeedsMembershipOnce: the room's state is read to seed its
// membership when the first of our puppets joins, not when another joins
// while one is in the room (which read n² member events in a room filled
// with n puppets); once none of ours is left, the next join reads again.
func TestJoinSeedsMembershipOnce(t *testing.T) {
	h, bob, alice, _ := badInputRoom(t)
	seeds := func(outcome string) float64 { return counter(h.metrics.MembershipSeeds.WithLabelValues(outcome)) }
	read, skipped := seeds("read"), seeds("skipped")
	carol := h.puppet("carol", "CAROL1")
	inv, _ := h.member(bob.room, bob.dev.UserID, string(carol), "invite")
	join, _ := h.member(bob.room, string(carol), string(carol), "join")
	h.send([]json.RawMessage{inv, join}, nil)
	if got := seeds("skipped"); got != skipped+1 || seeds("read") != read {
		t.Errorf("carol joined while alice was in the room: seeds read %v → %v, skipped %v → %v; want the state not read",
			read, seeds("read"), skipped, got)
	}
	leaveA, _ := h.member(bob.room, string(alice), string(alice), "leave")
	leaveC, _ := h.member(bob.room, string(carol), string(carol), "leave")
	dave := h.puppet("dave", "DAVE1")
	invD, _ := h.member(bob.room, bob.dev.UserID, string(dave), "invite")
	joinD, _ := h.member(bob.room, string(dave), string(dave), "join")
	h.send([]json.RawMessage{leaveA, leaveC, invD, joinD}, nil)
	if got := seeds("read"); got != read+1 {
		t.Errorf("dave joined with none of ours in the room: seeds read %v → %v, want one more", read, got)
	}
}

// TestMembershipEventAgain: a membership event that arrives a second time
// (our own join, read back at once and then sent by Synapse; an event
// found in a hole) is not delivered again: not to those who had it, and
// not as news to a puppet that joined in between.
func TestMembershipEventAgain(t *testing.T) {
	h, bob, alice, _ := badInputRoom(t)
	carol := h.puppet("carol", "CAROL1")
	inv, invID := h.member(bob.room, bob.dev.UserID, string(carol), "invite")
	h.send([]json.RawMessage{inv}, nil)
	if d, err := h.s.Delivery(h.ctx, alice, invID); err != nil || d == nil || d.Kind != KindMembership {
		t.Fatalf("alice's entry for carol's invitation: %+v (%v)", d, err)
	}
	dave := h.puppet("dave", "DAVE1")
	invD, _ := h.member(bob.room, bob.dev.UserID, string(dave), "invite")
	joinD, _ := h.member(bob.room, string(dave), string(dave), "join")
	h.send([]json.RawMessage{invD, joinD}, nil)
	dup := counter(h.metrics.DuplicateEvents)
	h.send([]json.RawMessage{inv}, nil)
	if d, err := h.s.Delivery(h.ctx, dave, invID); err != nil || d != nil {
		t.Errorf("dave, who joined after it, was given carol's invitation when it came again: %+v (%v)", d, err)
	}
	if got := counter(h.metrics.DuplicateEvents); got != dup+1 {
		t.Errorf("duplicate events counted %v → %v, want one more", dup, got)
	}
	log, err := h.s.Log(h.ctx, alice, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for i, d := range log {
		if d.Seq != log[0].Seq+int64(i) {
			t.Errorf("alice's log numbers are not consecutive: %d at %d", d.Seq, i)
		}
		if d.EventID == invID {
			n++
		}
	}
	if n != 1 {
		t.Errorf("alice's log has carol's invitation %d times, want once", n)
	}
}
