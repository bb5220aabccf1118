package groups

import (
	"encoding/json"
	"testing"

	"github.com/mls-appservice/mls-appservice/epochs"
)

// TestMessagesDropSettledEpochs: once every member of an epoch has moved
// on, here bob by committing and our alice by sending a message in his
// new epoch, retention deletes the old epoch's rows (its secrets with
// them) when the room is saved, long before max_epochs would.
func TestMessagesDropSettledEpochs(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	ours := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	bob := h.newRemoteRoom("bob")
	joined := bob.joinOurs(ours)

	out, commit, _, _ := bob.commit(view(bob.dev, ours), nil)
	h.send([]json.RawMessage{commit}, nil)
	epochRows := func() int {
		return h.count(`SELECT count(*) FROM dmls_epoch WHERE room_id = $1 AND epoch_id = $2`, bob.room, []byte(joined))
	}
	if epochRows() != 1 {
		t.Fatal("the epoch alice joined in is not retained after bob's commit: alice has not moved on")
	}
	dropped := counter(h.metrics.EpochsDropped)

	res, err := h.sendAs(alice, bob.room, "in bob's epoch", "")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := ParseEncrypted(h.outgoing(res.TxnID)); err != nil || e.Epoch != out.Commit.Epoch {
		t.Fatalf("sent in %v (%v), want bob's epoch %v", e.Epoch, err, out.Commit.Epoch)
	}
	if n := epochRows(); n != 0 {
		t.Fatalf("the settled epoch still has %d rows", n)
	}
	if n := h.count(`SELECT count(*) FROM dmls_epoch_private WHERE room_id = $1 AND epoch_id = $2`, bob.room, []byte(joined)); n != 0 {
		t.Fatalf("the settled epoch's private parts still have %d rows", n)
	}
	if got := counter(h.metrics.EpochsDropped) - dropped; got != 1 {
		t.Fatalf("%v epochs counted as dropped, want 1", got)
	}
}
