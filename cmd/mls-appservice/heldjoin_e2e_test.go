package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/groups"
)

// TestHeldJoinArrives runs B behind a delay line that never delivers its
// puppet's own join event, as Synapse does with a transaction it creates
// while it counts the appservice as down after its recoverer last looked
// (seen once in TestGroupsEndToEnd after B's restart: the puppet's
// membership stayed "invite" and the room's messages never reached it).
// B reads the join from the homeserver after accepting the invitation
// and queues it as if it had arrived: the puppet is joined, and reads the
// room's messages.
func TestHeldJoinArrives(t *testing.T) {
	_, svcs := startServices(t, serviceOptions{name: "mlsa"}, serviceOptions{name: "mlsb", linkDrop: isJoinOf("mlsb_b1")})
	A, B := svcs[0], svcs[1]
	w := newE2EWorld(t, svcs)
	ctx := context.Background()

	a1, b1 := w.puppet(A, "a1", 1), w.puppet(B, "b1", 1)
	room := w.createRoom(A, "held", a1, b1)
	w.send(room, a1, "after a held join")
	until(t, time.Minute, "the message delivered", func(ctx context.Context) (bool, error) {
		got, want, dup, stray, err := w.delivered(ctx)
		return got == want || dup > 0 || stray > 0, err
	})
	got, want, dup, stray, err := w.delivered(ctx)
	if err != nil || got != want || dup != 0 || stray != 0 {
		t.Errorf("delivered %d of %d, %d duplicated, %d to non-members (%v)", got, want, dup, stray, err)
	}
	// The test proves something only if the join was in fact held.
	if n := B.link.dropped.Load(); n != 1 {
		t.Errorf("the delay line held %d join events, want 1", n)
	}
	queued := scrapeLabelled(B)[`mlsas_dmls_own_joins_read_total{outcome="queued"}`]
	t.Logf("held joins %d; own joins queued after reading them %v", B.link.dropped.Load(), queued)
	if queued != 1 {
		t.Errorf("own joins queued %v, want 1", queued)
	}
}

// isJoinOf picks the join event of the puppet whose localpart is held
// (for a delay line's linkDrop).
func isJoinOf(held string) func(ev json.RawMessage) bool {
	return func(ev json.RawMessage) bool {
		var e struct {
			Type     string `json:"type"`
			StateKey string `json:"state_key"`
			Content  struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		return json.Unmarshal(ev, &e) == nil && e.Type == "m.room.member" && e.Content.Membership == "join" &&
			strings.HasPrefix(e.StateKey, "@"+held+":")
	}
}

// TestHeldMembershipAudited runs B behind a delay line that never delivers
// the join of a2, A's puppet, in a room where B's puppet b1 is: as Synapse
// holds a transaction it makes while it counts the appservice as down
// (groups/audit.go). B records a2 as invited only, and b1's log lacks the
// join. After B restarts, its membership audit reads the room's state and
// queues the missing event: B records a2 as joined, and b1's log has it.
func TestHeldMembershipAudited(t *testing.T) {
	_, svcs := startServices(t, serviceOptions{name: "mlsa"}, serviceOptions{name: "mlsb", linkDrop: isJoinOf("mlsa_a2")})
	A, B := svcs[0], svcs[1]
	w := newE2EWorld(t, svcs)
	ctx := context.Background()

	a1, a2, b1 := w.puppet(A, "a1", 1), w.puppet(A, "a2", 1), w.puppet(B, "b1", 1)
	room := w.createRoom(A, "audited", a1, b1)
	w.inviteAtOnce(room, invitation{s: A, by: a1, to: a2})
	w.joinedAll(room, time.Minute) // a2 in A's view
	w.converged(room, 2*time.Minute)

	membershipInB := func(ctx context.Context) (string, error) {
		var m string
		err := B.db.QueryRow(ctx, `SELECT coalesce((SELECT membership FROM room_member WHERE room_id = $1 AND user_id = $2), '')`,
			room, a2).Scan(&m)
		return m, err
	}
	joinEvent := func(ctx context.Context) (string, error) {
		var ev string
		err := A.db.QueryRow(ctx, `SELECT event_id FROM room_member WHERE room_id = $1 AND user_id = $2 AND membership = 'join'`,
			room, a2).Scan(&ev)
		return ev, err
	}
	// The test proves something only if the join was in fact held.
	if n := B.link.dropped.Load(); n != 1 {
		t.Fatalf("the delay line held %d join events, want 1", n)
	}
	if m, err := membershipInB(ctx); err != nil || m != "invite" {
		t.Fatalf("before the audit B has a2 as %q (%v), want invite", m, err)
	}
	ev, err := joinEvent(ctx)
	if err != nil {
		t.Fatal(err)
	}

	w.restart(B)
	until(t, time.Minute, "B records a2's join", func(ctx context.Context) (bool, error) {
		m, err := membershipInB(ctx)
		return m == "join", err
	})
	until(t, time.Minute, "b1's log has a2's join", func(ctx context.Context) (bool, error) {
		d, err := B.c.groups.Delivery(ctx, b1, id.EventID(ev))
		return d != nil && d.Kind == groups.KindMembership, err
	})
	queued := scrapeLabelled(B)[`mlsas_dmls_member_audit_total{outcome="queued"}`]
	t.Logf("held joins %d; membership events queued by the audit %v", B.link.dropped.Load(), queued)
	if queued != 1 {
		t.Errorf("membership events queued by the audit %v, want 1", queued)
	}
}
