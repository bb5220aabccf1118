package groups

import (
	"encoding/json"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
)

// Regression (fixed; found by the 20-seed soak of TestFederatedDMLS,
// seed 13).
//
// Backfill and hole filling read the room's history as a puppet of ours.
// They used the first of the member's devices (Member.Ours), which may
// belong to a puppet that has left the room while a retained epoch still
// holds its device. A puppet that has left sees the room's history only
// up to its leave, so paging back as one found none of the events after
// it: in seed 13, service B paged as a puppet removed during the
// partition and never delivered the eleven messages of the other side's
// burst that its homeserver had not received by transaction.
//
// TestReaderIsJoined: with the departed puppet's device first among ours,
// the history is read as the puppet still joined.
func TestReaderIsJoined(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	gone := h.puppet("aaron", "AARON1")
	stays := h.puppet("zed", "ZED1")
	bob := h.newRemoteRoom("bob")
	bob.joinOurs(epochs.Device{UserID: string(gone), DeviceID: "AARON1"}, epochs.Device{UserID: string(stays), DeviceID: "ZED1"})
	leave, _ := h.member(bob.room, string(gone), string(gone), "leave")
	h.send([]json.RawMessage{leave}, nil)

	r := h.loadRoom(bob.room)
	ours := r.m.Ours()
	if len(ours) == 0 || id.UserID(ours[0].UserID) != gone {
		t.Fatalf("precondition: the departed puppet's device is not first among ours %v", ours)
	}
	got, err := h.s.reader(h.ctx, h.db, r, ours)
	if err != nil {
		t.Fatal(err)
	}
	if got != stays {
		t.Errorf("history read as %s, want %s (joined)", got, stays)
	}
}

// Regression (fixed; found by the 20-seed soak of TestFederatedDMLS,
// seed 11).
//
// A message and a leave can be concurrent: the sender encrypted to the
// device of a puppet of ours whose leave it had not seen, and the message
// reached us after the leave. It went only to the puppets joined when it
// arrived, so the departed puppet, joined in the room's state at the
// message, never had it.
//
// TestDepartedPuppetGetsConcurrentMessage: bob's message of the epoch
// that still holds alice's device, arriving after alice left, reaches
// alice and carol; a later one in an epoch without her reaches carol only.
func TestDepartedPuppetGetsConcurrentMessage(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	carol := h.puppet("carol", "CAROL1")
	bob := h.newRemoteRoom("bob")
	devA := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	devC := epochs.Device{UserID: string(carol), DeviceID: "CAROL1"}
	bob.joinOurs(devA, devC)
	leave, _ := h.member(bob.room, string(alice), string(alice), "leave")
	h.send([]json.RawMessage{leave}, nil)

	msg, eid := bob.message("m.room.message", map[string]string{"body": "sent before bob saw alice leave"})
	h.send([]json.RawMessage{msg}, nil)
	for _, u := range []id.UserID{alice, carol} {
		if d, err := h.s.Delivery(h.ctx, u, eid); err != nil || d == nil || d.Kind != KindMessage {
			t.Errorf("%s: delivery %+v, %v; want the message", u, d, err)
		}
	}

	// Once bob removes alice's device, his messages are carol's alone.
	_, commit, _, _ := bob.commit(view(bob.dev, devC), nil)
	h.send([]json.RawMessage{commit}, nil)
	msg, eid = bob.message("m.room.message", map[string]string{"body": "after alice's removal"})
	h.send([]json.RawMessage{msg}, nil)
	if d, err := h.s.Delivery(h.ctx, carol, eid); err != nil || d == nil || d.Kind != KindMessage {
		t.Errorf("carol: delivery %+v, %v; want the message", d, err)
	}
	if d, _ := h.s.Delivery(h.ctx, alice, eid); d != nil {
		t.Errorf("alice, departed, got %+v", d)
	}
}
