package groups

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

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

// TestLookupsByUserUseItsIndex: the rooms of one user are found through
// the index keyed by user (room_member_user), not by reading the
// membership of every room. A device-list change of any user we share a
// room with asks for that user's rooms (roomsToReconcileSQL), and the bot
// API asks for a puppet's (membershipsSQL); with room_member indexed by
// room then user only, each read all 20,000 members here.
func TestLookupsByUserUseItsIndex(t *testing.T) {
	h := newHarness(t, harnessOptions{Quiet: true})
	for _, q := range []string{
		`INSERT INTO room_log (room_id) SELECT '!r' || i || ':hs' FROM generate_series(0, 999) i`,
		`INSERT INTO room_member_event (event_id, room_no, user_id, membership, current)
			SELECT '$e' || i, r.room_no, '@u' || i || ':hs', 'join', true
			FROM generate_series(1, 20000) i JOIN room_log r ON r.room_id = '!r' || (i % 1000) || ':hs'`,
		`INSERT INTO room_member_event (event_id, room_no, user_id, membership, current)
			SELECT e, r.room_no, '@p:hs', m, c FROM (VALUES
				('$p1', '!r1:hs', 'join', true), ('$p2', '!r2:hs', 'invite', true),
				('$p3-old', '!r3:hs', 'join', false), ('$p3', '!r3:hs', 'leave', true)) v (e, room, m, c)
			JOIN room_log r ON r.room_id = v.room`,
		`INSERT INTO dmls_room (room_id, suite, algorithm, state)
			SELECT '!r' || i || ':hs', 1, 'm.dmls.v1', 'active' FROM generate_series(0, 999) i`,
		`INSERT INTO dmls_left_out (room_id, user_id, reason)
			SELECT '!r' || (i % 1000) || ':hs', '@u' || i || ':hs|D', 'no_key_package' FROM generate_series(1, 20000) i`,
		`INSERT INTO dmls_left_out (room_id, user_id, reason) VALUES ('!r1:hs', '@p:hs', 'no_mls_device'),
			('!r2:hs', '@p:hs|DEV1', 'no_key_package'), ('!r2:hs', '@p:hs|', 'no_key_package'),
			('!r3:hs', '@p:hs.other', 'no_mls_device'), ('!r3:hs', '@p:hsx|DEV1', 'no_key_package'),
			('!r3:hs', '@p:hs}', 'no_mls_device')`,
		`ANALYZE dmls_left_out`,
		`ANALYZE room_member_event`,
		`ANALYZE room_log`,
		`ANALYZE dmls_room`,
	} {
		if _, err := h.db.Exec(h.ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name, sql, index string
	}{
		{"roomsToReconcileSQL", roomsToReconcileSQL, " room_member_user"},
		{"membershipsSQL", membershipsSQL, " room_member_user"},
		{"leftOutOfUserSQL", leftOutOfUserSQL, " dmls_left_out_user"},
	} {
		var plan []map[string]any
		if err := h.db.QueryRow(h.ctx, `EXPLAIN (FORMAT JSON) `+c.sql, "@p:hs").Scan(&plan); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var reads []string
		var walk func(n map[string]any)
		walk = func(n map[string]any) {
			if n["Relation Name"] == "room_member_event" || n["Relation Name"] == "dmls_left_out" {
				reads = append(reads, fmt.Sprintf("%v %v", n["Node Type"], n["Index Name"]))
			}
			if n["Node Type"] == "Bitmap Index Scan" && n["Index Name"] != nil {
				reads = append(reads, fmt.Sprintf("%v %v", n["Node Type"], n["Index Name"]))
			}
			children, _ := n["Plans"].([]any)
			for _, ch := range children {
				if m, ok := ch.(map[string]any); ok {
					walk(m)
				}
			}
		}
		walk(plan[0]["Plan"].(map[string]any))
		if !slices.ContainsFunc(reads, func(r string) bool { return strings.HasSuffix(r, c.index) }) ||
			slices.ContainsFunc(reads, func(r string) bool { return strings.HasPrefix(r, "Seq Scan") }) {
			t.Errorf("%s reads by %v, want through %s", c.name, reads, c.index)
		}
	}
	// And they find the user's current rows.
	ms, err := h.s.Memberships(h.ctx, "@p:hs")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(ms); got != "[{!r1:hs join true} {!r2:hs invite true} {!r3:hs leave true}]" {
		t.Errorf("memberships of @p:hs: %s", got)
	}
	rows, err := h.db.Query(h.ctx, roomsToReconcileSQL, "@p:hs")
	if err != nil {
		t.Fatal(err)
	}
	rooms, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || !slices.Equal(rooms, []string{"!r1:hs", "!r2:hs"}) && !slices.Equal(rooms, []string{"!r2:hs", "!r1:hs"}) {
		t.Errorf("rooms to reconcile for @p:hs: %v, %v", rooms, err)
	}
	// A device-list change of @p:hs clears its records, no one else's.
	h.exec(leftOutOfUserSQL, "@p:hs")
	rows, err = h.db.Query(h.ctx, `SELECT user_id FROM dmls_left_out WHERE user_id LIKE '@p:%' ORDER BY user_id COLLATE "C"`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if want := []string{"@p:hs.other", "@p:hsx|DEV1", "@p:hs}"}; err != nil || !slices.Equal(left, want) {
		t.Errorf("left-out records after @p:hs's device-list change: %v, %v; want %v", left, err, want)
	}
}
