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
