package main

import (
	"context"
	"encoding/json"
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
	const held = "mlsb_b1"
	isHeldJoin := func(ev json.RawMessage) bool {
		var e struct {
			Type     string `json:"type"`
			StateKey string `json:"state_key"`
			Content  struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		return json.Unmarshal(ev, &e) == nil && e.Type == "m.room.member" && e.Content.Membership == "join" &&
			len(e.StateKey) > len(held) && e.StateKey[1:len(held)+1] == held
	}
	_, svcs := startServices(t, serviceOptions{name: "mlsa"}, serviceOptions{name: "mlsb", linkDrop: isHeldJoin})
	A, B := svcs[0], svcs[1]
	w := newE2EWorld(t, svcs)
	ctx := context.Background()

	a1, b1 := w.puppet(A, "a1", 1), w.puppet(B, "b1", 1)
	room, err := A.c.groups.CreateRoom(ctx, a1, "", groups.CreateRoomOptions{Name: "held", Invite: []id.UserID{b1}})
	if err != nil {
		t.Fatal(err)
	}
	w.joined[room] = map[id.UserID]bool{a1: true, b1: true}
	w.joinedAll(room, time.Minute)
	w.converged(room, 2*time.Minute)
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
