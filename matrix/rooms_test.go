package matrix_test

import (
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// TestStateAt: the state at an event is the room's as of that event in
// the graph, not as of now: bob, invited and joined after alice's first
// message, is not a member at it, and is at a message sent after.
func TestStateAt(t *testing.T) {
	e := startMediaEnv(t)
	ctx := t.Context()
	alice := e.device(t, "alice", "ALICEDEV")
	bob := e.device(t, "bob", "BOBDEV")
	aliceCli := e.client(t, alice)
	room, err := aliceCli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(body string) id.EventID {
		resp, err := aliceCli.SendMessageEvent(ctx, room.RoomID, event.EventMessage, map[string]string{"msgtype": "m.text", "body": body})
		if err != nil {
			t.Fatal(err)
		}
		return resp.EventID
	}
	before := send("before bob")
	if _, err := aliceCli.InviteUser(ctx, room.RoomID, &mautrix.ReqInviteUser{UserID: bob}); err != nil {
		t.Fatal(err)
	}
	bobCli := e.client(t, bob)
	if _, err := bobCli.JoinRoom(ctx, room.RoomID.String(), nil); err != nil {
		t.Fatal(err)
	}
	after := send("after bob")
	membership := func(at id.EventID) map[string]string {
		state, err := e.puppets.StateAt(ctx, alice, room.RoomID, at)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, raw := range state {
			var ev struct {
				Type     string `json:"type"`
				StateKey string `json:"state_key"`
				Content  struct {
					Membership string `json:"membership"`
				} `json:"content"`
			}
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Type == "m.room.member" {
				out[ev.StateKey] = ev.Content.Membership
			}
		}
		return out
	}
	if m := membership(before); m[alice.String()] != "join" || m[bob.String()] != "" {
		t.Errorf("membership at alice's first message: %v, want alice joined and no bob", m)
	}
	if m := membership(after); m[alice.String()] != "join" || m[bob.String()] != "join" {
		t.Errorf("membership at the message after bob joined: %v, want both joined", m)
	}
}
