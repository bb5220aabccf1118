package groups

import (
	"encoding/json"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
)

// TestMessageRun: transactions of several messages of a room are applied
// as runs (inbound.RoomRunHandler), and what a puppet gets is what it got
// one by one: every message once, in order, numbered without gaps, also
// when a run's deliveries take several statements, and the room's secret
// tree stored after each run (the next run's first message skips
// nothing).
func TestMessageRun(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice, carol := h.puppet("alice", "ALICE1"), h.puppet("carol", "CAROL1")
	bob := h.newRemoteRoom("bob")
	bob.joinOurs(epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}, epochs.Device{UserID: string(carol), DeviceID: "CAROL1"})
	first, err := h.s.LastSeq(h.ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	var sent []id.EventID
	for txn := range 4 {
		if txn == 2 {
			h.s.runRows = 5 // two messages a statement for the two puppets
		}
		var evs []json.RawMessage
		for i := range 5 {
			msg, eid := bob.message("m.room.message", map[string]string{"body": fmt.Sprintf("run %d message %d", txn, i)})
			evs = append(evs, msg)
			sent = append(sent, eid)
		}
		h.send(evs, nil)
	}
	if got := counter(h.spine.RunEvents.WithLabelValues("applied")); got != float64(len(sent)) {
		t.Errorf("%v events applied in runs, want %d (one by one: %v)", got, len(sent), counter(h.spine.RunEvents.WithLabelValues("one_by_one")))
	}
	if got := counter(h.metrics.HoleChecks.WithLabelValues(holeSkipped)); got != 0 {
		t.Errorf("%v holes looked for: a run's message skipped generations", got)
	}
	if got := counter(h.metrics.MessagesDecrypt); got != float64(len(sent)) {
		t.Errorf("%v messages decrypted, want %d", got, len(sent))
	}
	log, err := h.s.Log(h.ctx, alice, first, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != len(sent) {
		t.Fatalf("alice's log has %d entries after the runs, want %d", len(log), len(sent))
	}
	for i, d := range log {
		want := fmt.Sprintf(`{"body":"run %d message %d"}`, i/5, i%5)
		if d.EventID != sent[i] || d.Seq != first+int64(i)+1 || d.Kind != KindMessage || string(d.Content) != want {
			t.Errorf("entry %d: %s seq %d %s %s, want %s seq %d %s", i, d.EventID, d.Seq, d.Kind, d.Content, sent[i], first+int64(i)+1, want)
		}
	}
	goesOn(t, h, bob, alice)
}
