package groups

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func undecryptableTotal(h *harness) float64 {
	var n float64
	for _, r := range []string{"epoch_never_arrived", "epoch_dropped", "decrypt_failed", "replayed", "sender_mismatch", "bad_plaintext"} {
		n += counter(h.metrics.Undecryptable.WithLabelValues(r))
	}
	return n
}

// TestMessageWaitsForItsEpoch: a message that arrives before the commit
// of its epoch waits, and is delivered once the commit is applied; the
// commit event seen again (the same event, or the same commit under
// another event id) changes nothing.
func TestMessageWaitsForItsEpoch(t *testing.T) {
	h, bob, alice, dev := badInputRoom(t)
	// (The commit that added alice waits already: it arrived before
	// her Welcome, on a base we never hold.)
	waiting, waits := h.count(`SELECT count(*) FROM dmls_waiting WHERE room_id = $1`, bob.room), counter(h.metrics.MessagesWaiting)
	_, commit, _, _ := bob.commit(view(bob.dev, dev), nil)
	msg, eid := bob.message("m.room.message", map[string]string{"body": "early"})
	h.send([]json.RawMessage{msg}, nil)
	if got := counter(h.metrics.MessagesWaiting) - waits; got != 1 {
		t.Errorf("%v messages waiting, want 1", got)
	}
	if d, _ := h.s.Delivery(h.ctx, alice, eid); d != nil {
		t.Fatalf("delivered before its epoch: %+v", d)
	}
	if n := h.count(`SELECT count(*) FROM dmls_waiting WHERE room_id = $1`, bob.room) - waiting; n != 1 {
		t.Errorf("%d events waiting", n)
	}
	applied := counter(h.metrics.CommitsApplied)
	h.send([]json.RawMessage{commit}, nil)
	if got := counter(h.metrics.CommitsApplied) - applied; got != 1 {
		t.Errorf("%v commits applied", got)
	}
	d, err := h.s.Delivery(h.ctx, alice, eid)
	if err != nil || d == nil || d.Kind != KindMessage {
		t.Fatalf("waiting message after its commit: %+v (%v)", d, err)
	}
	if n := h.count(`SELECT count(*) FROM dmls_waiting WHERE room_id = $1`, bob.room); n != waiting {
		t.Errorf("%d events still waiting, %d before", n, waiting)
	}
	if undecryptableTotal(h) != 0 {
		t.Error("counted undecryptable")
	}

	// Replays of the commit.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(commit, &raw); err != nil {
		t.Fatal(err)
	}
	raw["event_id"] = json.RawMessage(`"$copy:remote.test"`)
	h.send([]json.RawMessage{commit, mustJSON(t, raw)}, nil)
	if got := counter(h.metrics.CommitsApplied) - applied; got != 1 {
		t.Errorf("%v commits applied after replays, want 1", got)
	}
	r := h.loadRoom(bob.room)
	if heads := r.m.Graph().Heads(); len(heads) != 1 {
		t.Errorf("%d heads after replays", len(heads))
	}
	goesOn(t, h, bob, alice)
}

// runWaitTimer runs the room's dmls_wait timer as the spine's timer loop
// would (its handler, in a transaction).
func (h *harness) runWaitTimer(r *remote) time.Time {
	h.t.Helper()
	var next time.Time
	h.inWork(func(w *inbound.Work) (err error) {
		next, err = (waitTimer{h.s}).Timer(h.ctx, w, database.Timer{Kind: timerWait, Key: string(r.room),
			Queue: roomQueue(r.room), DueAt: h.s.now()})
		return err
	})
	return next
}

// TestWaitEnds: a message of an epoch that never comes waits for
// groups.wait, then is counted undecryptable and delivered as such.
func TestWaitEnds(t *testing.T) {
	h, bob, alice, dev := badInputRoom(t)
	// A branch we never see: a copy of bob commits and writes in it.
	other := bob.clone()
	out, err := other.Commit(bob.dev, view(bob.dev, dev), func(epochs.Device) *message.KeyPackage { return nil }, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.SetCommitEvent(out.Commit.Epoch, "$unseen:remote.test"); err != nil {
		t.Fatal(err)
	}
	epoch, ct, err := other.Encrypt(bob.dev, mustJSON(t, map[string]any{"type": "m.room.message",
		"content": map[string]string{"body": "lost"}, "room_id": bob.room}))
	if err != nil {
		t.Fatal(err)
	}
	creator := bob.dev
	msg, eid := h.event(bob.room, bob.dev.UserID, EncryptedType, nil, wireEncrypted{Algorithm: bob.alg, Ciphertext: b64(ct),
		EpochCreator: (*deviceJSON)(&creator), CommitEvent: "$unseen:remote.test", Epoch: (*b64ID)(&epoch)})
	waits := counter(h.metrics.MessagesWaiting)
	h.send([]json.RawMessage{msg}, nil)
	if got := counter(h.metrics.MessagesWaiting) - waits; got != 1 {
		t.Fatalf("%v waiting", got)
	}
	// Before the wait ends the timer leaves it alone.
	if next := h.runWaitTimer(bob); next.IsZero() || undecryptableTotal(h) != 0 {
		t.Fatalf("early timer: next %v, undecryptable %v", next, undecryptableTotal(h))
	}
	h.advance(h.s.cfg.Wait + time.Second)
	if next := h.runWaitTimer(bob); !next.IsZero() {
		t.Errorf("timer runs again at %v with nothing waiting", next)
	}
	if got := counter(h.metrics.Undecryptable.WithLabelValues("epoch_never_arrived")); got != 1 {
		t.Errorf("%v undecryptable (epoch_never_arrived), want 1", got)
	}
	d, err := h.s.Delivery(h.ctx, alice, eid)
	if err != nil || d == nil || d.Kind != KindUndecryptable {
		t.Errorf("lost message delivered as %+v (%v)", d, err)
	}
	goesOn(t, h, bob, alice)
}

// newKeyPackage makes a KeyPackage of a remote device.
func newKeyPackage(t testing.TB, d epochs.Device) *message.KeyPackage {
	t.Helper()
	s, err := suite.Lookup(testSuite)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.GenerateSignatureKey()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := group.NewKeyPackage(message.BasicCredential([]byte(d.Identity())), sig, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &kp.KeyPackage
}

// TestRestartFromPostgres: a new Service over the same database (the
// process killed between two work items) goes on with the room from
// PostgreSQL alone: it decrypts the next message, applies the next
// commit once, and finds the log where the first left it.
func TestRestartFromPostgres(t *testing.T) {
	h, bob, alice, dev := badInputRoom(t)
	_, commit, _, _ := bob.commit(view(bob.dev, dev), nil)
	h.send([]json.RawMessage{commit}, nil)
	last, err := h.s.LastSeq(h.ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	h2 := h.restart(harnessOptions{})
	bob.h = h2
	// The commit again (a homeserver resending it after the crash): not
	// applied a second time.
	h2.send([]json.RawMessage{commit}, nil)
	if got := counter(h2.metrics.CommitsApplied); got != 0 {
		t.Errorf("the restarted service applied the commit again (%v)", got)
	}
	msg, eid := bob.message("m.room.message", map[string]string{"body": "after the restart"})
	h2.send([]json.RawMessage{msg}, nil)
	d, err := h2.s.Delivery(h2.ctx, alice, eid)
	if err != nil || d == nil || d.Kind != KindMessage || d.Seq != last+1 {
		t.Fatalf("after the restart: %+v (%v), last seq before %d", d, err, last)
	}
	_, commit2, _, _ := bob.commit(view(bob.dev, dev), nil)
	h2.send([]json.RawMessage{commit2}, nil)
	if got := counter(h2.metrics.CommitsApplied); got != 1 {
		t.Errorf("%v commits applied after the restart, want 1", got)
	}
	goesOn(t, h2, bob, alice)
}

// TestMessageTwiceIsNotUndecryptable: a message applied once (here: from
// a first transaction; in the service also from a hole in the timeline,
// gap.go) that arrives again finds its key used. It is a duplicate, not
// an undecryptable message: nothing more is delivered, and a message
// whose key another event used is still reported (as replayed).
func TestMessageTwiceIsNotUndecryptable(t *testing.T) {
	h, bob, alice, _ := badInputRoom(t)
	msg, eid := bob.message("m.room.message", map[string]string{"body": "once"})
	h.send([]json.RawMessage{msg}, nil)
	h.send([]json.RawMessage{msg}, nil)
	if got := undecryptableTotal(h); got != 0 {
		t.Errorf("the same message twice: %v undecryptable", got)
	}
	if got := counter(h.metrics.DuplicateEvents); got != 1 {
		t.Errorf("%v duplicates counted, want 1", got)
	}
	if d, err := h.s.Delivery(h.ctx, alice, eid); err != nil || d == nil || d.Kind != KindMessage {
		t.Fatalf("delivery of the message: %+v %v", d, err)
	}
	// The same ciphertext in another event: a replay.
	var ev map[string]any
	if err := json.Unmarshal(msg, &ev); err != nil {
		t.Fatal(err)
	}
	ev["event_id"] = "$replay:" + remoteDomain
	h.send([]json.RawMessage{mustJSON(t, ev)}, nil)
	if got := undecryptableTotal(h); got != 1 {
		t.Errorf("a replayed ciphertext: %v undecryptable, want 1", got)
	}
}
