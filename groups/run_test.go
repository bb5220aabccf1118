package groups

import (
	"encoding/json"
	"fmt"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/group"
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
			h.s.runRows = 2 // two messages a statement
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

// TestMessageRunForgedSignature: a run's signatures are verified
// together after its messages decrypt (epochs.VerifyOpened). One message
// that decrypts but is not signed by its sender declines the whole run:
// nothing of it is delivered from the run, and one by one the others are
// delivered and the forgery refused.
func TestMessageRunForgedSignature(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	bob := h.newRemoteRoom("bob")
	bob.joinOurs(epochs.Device{UserID: string(alice), DeviceID: "ALICE1"})
	first, err := h.s.LastSeq(h.ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	var evs []json.RawMessage
	var sent []id.EventID
	for i := range 5 {
		content := map[string]string{"body": fmt.Sprintf("message %d", i)}
		// The forgery is last: a message after it would skip its
		// generation, which declines a run by itself.
		build := bob.message
		if i == 4 {
			build = bob.forgedMessage
		}
		msg, eid := build("m.room.message", content)
		evs = append(evs, msg)
		sent = append(sent, eid)
	}
	h.send(evs, nil)
	if got := counter(h.spine.RunEvents.WithLabelValues("applied")); got != 0 {
		t.Errorf("%v events applied in a run with a forged signature", got)
	}
	if got := counter(h.metrics.Undecryptable.WithLabelValues("decrypt_failed")); got != 1 {
		t.Errorf("%v messages refused, want the forgery", got)
	}
	log, err := h.s.Log(h.ctx, alice, first, 100)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, d := range log {
		kinds = append(kinds, string(d.Kind))
		if d.Kind == KindMessage && d.EventID == sent[4] {
			t.Errorf("the forgery was delivered: %s", d.Content)
		}
	}
	messages := 0
	for i, d := range log {
		if d.Kind != KindMessage {
			continue
		}
		want := fmt.Sprintf(`{"body":"message %d"}`, messages)
		if string(d.Content) != want {
			t.Errorf("entry %d: %s, want %s", i, d.Content, want)
		}
		messages++
	}
	if messages != 4 {
		t.Fatalf("alice got %d messages (log kinds %v), want 4", messages, kinds)
	}
	goesOn(t, h, bob, alice)
}

// forgedMessage is message signed with a key that is not the sender's:
// it decrypts, and only its signature is wrong.
func (r *remote) forgedMessage(typ string, content any) (json.RawMessage, id.EventID) {
	r.h.t.Helper()
	epoch, err := r.m.Base()
	if err != nil {
		r.h.t.Fatal(err)
	}
	g, err := r.m.Group(epoch, r.dev)
	if err != nil {
		r.h.t.Fatal(err)
	}
	// A private state is version (1 byte), leaf (4), the signature key
	// as an opaque vector (a 1-byte length for a 32-byte Ed25519 seed),
	// then the path keys: put another key in its place.
	priv, err := g.Private().MarshalBinary()
	if err != nil {
		r.h.t.Fatal(err)
	}
	other, err := g.Public().Suite().GenerateSignatureKey()
	if err != nil {
		r.h.t.Fatal(err)
	}
	if priv[5] != 32 {
		r.h.t.Fatalf("private state encoding: signature key of %d bytes", priv[5])
	}
	copy(priv[6:38], other.Bytes())
	forged, err := group.UnmarshalPrivate(priv)
	if err != nil {
		r.h.t.Fatal(err)
	}
	plain := mustJSON(r.h.t, map[string]any{"type": typ, "content": content, "room_id": r.room})
	ct, err := group.New(g.Public(), forged, r.h.s.groupConfig()).Protect(plain, nil)
	if err != nil {
		r.h.t.Fatal(err)
	}
	return r.encrypted(epoch, ct)
}
