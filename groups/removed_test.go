package groups

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// Regression (fixed; found by this test).
//
// When a commit removes every device of ours, epochs.Member.Apply returns
// ErrRemoved and records the new epoch as metadata only (Observe, learn):
// the node is in the graph right after Apply. But groups.saveRoom calls
// Member.Retain before Flush on every save, and Retain drops that node
// (checked in memory: known after Apply, unknown after Retain; the graph
// has no heads then). The next message of that epoch is then of an
// unknown epoch while Ours() still lists our device (it holds the parent
// epoch), so receiveMessage makes it wait, and when the wait ends
// waitTimer counts it undecryptable (epoch_never_arrived), never as not
// addressed to us: issue 11 requires "reports them as not addressed to
// it, not as undecryptable". receiveMessage now counts a message of an
// unknown epoch as not addressed when no puppet of ours is joined.
//
// TestRemovedIsNotAddressed: once bob's commit removes our only device
// (alice left), bob's later messages are counted as not addressed to us,
// never as undecryptable, and alice's log gets none of them.
func TestRemovedIsNotAddressed(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	dev := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	bob := h.newRemoteRoom("bob")
	// Dave, remote, joins before our puppet (while we hold no epoch, so
	// that no device list is queried), and bob adds him after alice: bob
	// and dave stay when alice goes.
	dave := remoteMember(7)
	join, _ := h.member(bob.room, dave.UserID, dave.UserID, "join")
	h.send([]json.RawMessage{join}, nil)
	h.seedDevices(dave.UserID, dave.DeviceID)
	bob.joinOurs(dev)
	_, add, _, _ := bob.commit(view(bob.dev, dev, dave), map[epochs.Device]*message.KeyPackage{dave: newKeyPackage(t, dave)})
	h.send([]json.RawMessage{add}, nil)
	leave, _ := h.member(bob.room, string(alice), string(alice), "leave")
	h.send([]json.RawMessage{leave}, nil)
	_, commit, _, _ := bob.commit(view(bob.dev, dave), nil)
	h.send([]json.RawMessage{commit}, nil)
	before := h.logged(alice, KindMessage, KindUndecryptable)
	r := h.loadRoom(bob.room)
	t.Logf("after the removal: ours %v, heads %d, applied %v", r.m.Ours(), len(r.m.Graph().Heads()), counter(h.metrics.CommitsApplied))
	msg, eid := bob.message("m.room.message", map[string]string{"body": "after alice left"})
	h.send([]json.RawMessage{msg}, nil)
	r = h.loadRoom(bob.room)
	var raw struct{ Content json.RawMessage }
	_ = json.Unmarshal(msg, &raw)
	pe, err := ParseEncrypted(raw.Content)
	if err != nil {
		t.Fatal(err)
	}
	n, known := r.node(pe.Epoch)
	t.Logf("message epoch known %v (retained %v, holders %v); not addressed %v, waiting %v", known, n.Retained,
		r.m.Holders(pe.Epoch), counter(h.metrics.NotAddressed), counter(h.metrics.MessagesWaiting))
	// If it had to wait, the wait's end decides.
	h.advance(h.s.cfg.Wait + time.Second)
	h.runWaitTimer(bob)
	if got := counter(h.metrics.NotAddressed); got != 1 {
		t.Errorf("%v not addressed, want 1", got)
	}
	if got := undecryptableTotal(h); got != 0 {
		t.Errorf("counted %v undecryptable", got)
	}
	if d, _ := h.s.Delivery(h.ctx, alice, eid); d != nil {
		t.Errorf("alice got %+v", d)
	}
	if n := h.logged(alice, KindMessage, KindUndecryptable); n != before {
		t.Errorf("alice's log has %d messages, %d before", n, before)
	}
}
