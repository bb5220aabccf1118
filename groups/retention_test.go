package groups

import (
	"encoding/json"
	"testing"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// TestSettledEpochsDropped: an epoch goes, its rows and secrets with it,
// once every member moved on from it, long before groups.max_epochs would
// take it. Our alice only listens: bob's commit above the epoch she
// joined in moves both on (she holds his epoch and can never go back), so
// it goes at once. cat, a remote member who never sends, then keeps
// every later epoch: nothing shows that she moved on.
func TestSettledEpochsDropped(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	ours := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	bob := h.newRemoteRoom("bob")
	cat, catKP := bob.remoteMember("cat")
	joined := bob.joinOurs(ours)
	rows := func(table string, e epochs.ID) int {
		return h.count(`SELECT count(*) FROM `+table+` WHERE room_id = $1 AND epoch_id = $2`, bob.room, []byte(e))
	}
	if rows("dmls_epoch", joined) != 1 || rows("dmls_epoch_private", joined) != 1 {
		t.Fatal("the epoch alice joined in is not stored")
	}
	dropped := counter(h.metrics.EpochsDropped)

	out, commit, _, _ := bob.commit(view(bob.dev, ours, cat), map[epochs.Device]*message.KeyPackage{cat: catKP})
	h.send([]json.RawMessage{commit}, nil)
	if n, p := rows("dmls_epoch", joined), rows("dmls_epoch_private", joined); n != 0 || p != 0 {
		t.Fatalf("the settled epoch alice joined in keeps %d rows and %d private rows", n, p)
	}
	if got := counter(h.metrics.EpochsDropped) - dropped; got != 1 {
		t.Fatalf("%v epochs counted as dropped, want 1", got)
	}

	withCat := out.Commit.Epoch
	for range 2 {
		_, commit, _, _ := bob.commit(view(bob.dev, ours, cat), nil)
		h.send([]json.RawMessage{commit}, nil)
	}
	if n := rows("dmls_epoch", withCat); n != 1 {
		t.Fatal("an epoch cat has not moved on from was dropped")
	}
	if n := h.count(`SELECT count(*) FROM dmls_epoch WHERE room_id = $1`, bob.room); n != 3 {
		t.Fatalf("%d epochs stored, want the 3 cat is in", n)
	}
}
