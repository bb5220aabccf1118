package groups

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// fullLog reads a puppet's whole log with Log, page by page.
func (h *harness) fullLog(puppet id.UserID, page int) []Delivered {
	h.t.Helper()
	var out []Delivered
	after := int64(0)
	for {
		got, err := h.s.Log(h.ctx, puppet, after, page)
		if err != nil {
			h.t.Fatal(err)
		}
		if len(got) > page {
			h.t.Fatalf("Log returned %d entries for a page of %d", len(got), page)
		}
		if len(got) == 0 {
			return out
		}
		out = append(out, got...)
		after = got[len(got)-1].Seq
	}
}

// entryMaker makes entries for tests of the delivery log: the i-th made
// is event $e<i> from bob, its body the event's ID.
type entryMaker struct{ n int }

func (m *entryMaker) next(room id.RoomID, kind Kind) Delivered {
	m.n++
	e := id.EventID(fmt.Sprintf("$e%d", m.n))
	return Delivered{RoomID: room, EventID: e, Kind: kind, Sender: "@bob:remote.test", SenderDevice: "BOB",
		Type: "m.room.message", Content: json.RawMessage(fmt.Sprintf(`{"body":%q}`, e)), OriginServerTS: int64(m.n)}
}

// deliverNow delivers ds to the puppets to in a transaction of its own,
// then counts what it did, as the worker does after a commit.
func (h *harness) deliverNow(to []id.UserID, ds ...Delivered) {
	h.t.Helper()
	var w *inbound.Work
	if err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
		w = &inbound.Work{Q: tx}
		_, err := h.s.deliverAll(h.ctx, w, to, ds)
		return err
	}); err != nil {
		h.t.Fatal(err)
	}
	w.Committed()
}

// logged counts the entries of puppet's log of the kinds given.
func (h *harness) logged(puppet id.UserID, kinds ...Kind) int {
	h.t.Helper()
	n := 0
	for _, d := range h.fullLog(puppet, 100) {
		if slices.Contains(kinds, d.Kind) {
			n++
		}
	}
	return n
}

// TestDeliveryLog: a remote user's messages are decrypted once for the
// room and appended once to the log of each of our joined puppets, with
// sequence numbers that increase by one per puppet; a replayed event is
// not delivered again; Log and RoomLog paginate the same entries.
func TestDeliveryLog(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	carol := h.puppet("carol", "CAROL1", "CAROL2")
	ours := []epochs.Device{{UserID: string(alice), DeviceID: "ALICE1"}, {UserID: string(carol), DeviceID: "CAROL1"},
		{UserID: string(carol), DeviceID: "CAROL2"}}
	bob := h.newRemoteRoom("bob")
	bob.joinOurs(ours...)
	decrypted := counter(h.metrics.MessagesDecrypt)

	const n = 7
	var sent []id.EventID
	var events []json.RawMessage
	for i := range n {
		ev, eid := bob.message("m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)})
		sent, events = append(sent, eid), append(events, ev)
	}
	h.send(events[:3], nil)
	h.send(events[3:], nil)
	// The same events again (a homeserver retrying, a second copy):
	// nothing new is delivered.
	h.send(events[1:5], nil)

	if got := counter(h.metrics.MessagesDecrypt) - decrypted; got != n {
		t.Errorf("%v messages decrypted, want %d (once per room)", got, n)
	}
	for _, p := range []id.UserID{alice, carol} {
		log := h.fullLog(p, 2)
		if len(log) == 0 {
			t.Fatalf("%s: empty log", p)
		}
		var msgs []id.EventID
		for i, d := range log {
			if d.Seq != int64(i+1) || d.Puppet != p {
				t.Errorf("%s: entry %d has seq %d (puppet %s)", p, i, d.Seq, d.Puppet)
			}
			if d.Kind == KindMessage {
				msgs = append(msgs, d.EventID)
				var c struct{ Body string }
				if err := json.Unmarshal(d.Content, &c); err != nil || d.Type != "m.room.message" ||
					d.Sender != id.UserID(bob.dev.UserID) || d.SenderDevice != id.DeviceID(bob.dev.DeviceID) {
					t.Errorf("%s: entry %+v", p, d)
				} else if want := fmt.Sprintf("message %d", slices.Index(sent, d.EventID)); c.Body != want {
					t.Errorf("%s: %s says %q, want %q", p, d.EventID, c.Body, want)
				}
			}
		}
		if !slices.Equal(msgs, sent) {
			t.Errorf("%s: messages %v, want each of %v once, in order", p, msgs, sent)
		}
		last, err := h.s.LastSeq(h.ctx, p)
		if err != nil || last != int64(len(log)) {
			t.Errorf("%s: LastSeq %d (%v), log of %d", p, last, err, len(log))
		}
		// RoomLog pages backwards through the same entries.
		var back []Delivered
		before := int64(0)
		for {
			got, err := h.s.RoomLog(h.ctx, p, bob.room, before, 3)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 {
				break
			}
			back = append(back, got...)
			before = got[len(got)-1].Seq
		}
		slices.Reverse(back)
		if len(back) != len(log) {
			t.Fatalf("%s: RoomLog has %d entries, Log %d", p, len(back), len(log))
		}
		for i := range back {
			if back[i].Seq != log[i].Seq || back[i].EventID != log[i].EventID || back[i].Kind != log[i].Kind {
				t.Errorf("%s: RoomLog entry %d is %d %s, Log's %d %s", p, i, back[i].Seq, back[i].EventID, log[i].Seq, log[i].EventID)
			}
		}
		if got, err := h.s.RoomLog(h.ctx, p, "!other:remote.test", 0, 10); err != nil || len(got) != 0 {
			t.Errorf("%s: RoomLog of another room: %d entries, %v", p, len(got), err)
		}
		if d, err := h.s.Delivery(h.ctx, p, sent[3]); err != nil || d == nil || d.Kind != KindMessage {
			t.Errorf("%s: Delivery of %s: %+v, %v", p, sent[3], d, err)
		}
	}
	// Each (puppet, event, kind) is in the tables once; each message and
	// membership event is stored once, in its room's log, and only there.
	if dup := h.count(`SELECT count(*) FROM (SELECT 1 FROM delivery GROUP BY log_no, event_id, kind HAVING count(*) > 1) d`); dup != 0 {
		t.Errorf("%d entries delivered more than once", dup)
	}
	if n := h.count(`SELECT count(*) FROM delivery WHERE kind IN ('message', 'membership')`); n != 0 {
		t.Errorf("%d messages or membership events stored in puppets' own logs", n)
	}
	if n, want := h.count(`SELECT count(*) FROM room_entry WHERE kind = 'message'`), len(sent); n != want {
		t.Errorf("%d messages in the room's log, want %d", n, want)
	}
	if n := h.count(`SELECT count(*) FROM room_entry WHERE kind = 'membership'`); n == 0 {
		t.Error("no membership events in the room's log")
	}
	// The stored content is sealed.
	if n := h.count(`SELECT count(*) FROM room_entry WHERE position('message 3'::bytea in content) > 0`); n != 0 {
		t.Errorf("%d messages of the room's log hold the plaintext", n)
	}
}

// ourMessage sends as puppet and returns the result.
func (h *harness) sendAs(puppet id.UserID, room id.RoomID, body, key string) (SendResult, error) {
	return h.s.Send(h.ctx, puppet, "", room, "m.room.message", json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":%q}`, body)), key)
}

// TestSendIdempotent: Send with one idempotency key writes one outbox row
// and answers every retry, sequential or concurrent, with the first
// result; a key reused for another puppet is refused; the message's echo
// is delivered to our puppets from what was recorded, not decrypted.
func TestSendIdempotent(t *testing.T) {
	h := newHarness(t, harnessOptions{MaxConns: 12})
	alice := h.puppet("alice", "ALICE1")
	carol := h.puppet("carol", "CAROL1")
	ours := []epochs.Device{{UserID: string(alice), DeviceID: "ALICE1"}, {UserID: string(carol), DeviceID: "CAROL1"}}
	bob := h.newRemoteRoom("bob")
	bob.joinOurs(ours...)
	rows := func() int {
		return h.count(`SELECT count(*) FROM outbox WHERE kind = 'room_event' AND room_id = $1`, bob.room)
	}
	before := rows()

	first, err := h.sendAs(alice, bob.room, "hello", "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if first.TxnID == "" || first.Device != "ALICE1" || first.RoomID != bob.room {
		t.Fatalf("result %+v", first)
	}
	again, err := h.sendAs(alice, bob.room, "hello", "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("retry answered %+v, first %+v", again, first)
	}
	if got := rows() - before; got != 1 {
		t.Errorf("%d outbox rows after a send and its retry", got)
	}
	if got := counter(h.metrics.MessagesSent); got != 1 {
		t.Errorf("%v messages encrypted", got)
	}

	// Concurrent requests with one key: one row, one answer for all.
	const n = 8
	results := make([]SendResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = h.sendAs(alice, bob.room, "concurrent", "key-2") })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent send %d: %v", i, errs[i])
		}
		if results[i] != results[0] {
			t.Errorf("concurrent send %d answered %+v, send 0 %+v", i, results[i], results[0])
		}
	}
	if results[0].TxnID == first.TxnID {
		t.Error("a second key got the first key's send")
	}
	if got := rows() - before; got != 2 {
		t.Errorf("%d outbox rows after two keys", got)
	}
	if got := h.count(`SELECT count(*) FROM dmls_send`); got != 2 {
		t.Errorf("%d dmls_send rows", got)
	}

	// A key is bound to its room and puppet.
	if _, err := h.sendAs(carol, bob.room, "hello", "key-1"); !errors.Is(err, inbound.ErrInvalid) {
		t.Errorf("key of alice reused by carol: %v", err)
	}
	if got := rows() - before; got != 2 {
		t.Errorf("%d outbox rows after a refused reuse", got)
	}
	// Without a key every call sends.
	for range 2 {
		if _, err := h.sendAs(alice, bob.room, "no key", ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := rows() - before; got != 4 {
		t.Errorf("%d outbox rows after two sends without a key", got)
	}
	if _, err := h.sendAs(h.puppets.PuppetID("nobody"), bob.room, "x", ""); !errors.Is(err, ErrNotInGroup) {
		t.Errorf("a puppet not in the group sends: %v", err)
	}
	if _, err := h.sendAs("@bob:remote.test", bob.room, "x", ""); !errors.Is(err, ErrNotPuppet) {
		t.Errorf("a user not ours sends: %v", err)
	}

	// The echo of alice's first message, as the homeserver returns it, is
	// delivered to both puppets from dmls_sent; bob decrypts it.
	var content []byte
	if err := h.db.QueryRow(h.ctx, `SELECT content FROM outbox WHERE txn_id = $1`, first.TxnID).Scan(&content); err != nil {
		t.Fatal(err)
	}
	e, err := ParseEncrypted(content)
	if err != nil {
		t.Fatalf("our own message does not parse: %v", err)
	}
	plain, sender, err := bob.m.Decrypt(e.Epoch, e.Ciphertext)
	if err != nil || sender != ours[0] {
		t.Fatalf("bob decrypts alice's message: %v (sender %v)", err, sender)
	}
	if p, err := ParsePlaintext(plain); err != nil || p.RoomID != string(bob.room) || p.Type != "m.room.message" {
		t.Errorf("plaintext %s: %v", plain, err)
	}
	echo, eid := h.event(bob.room, string(alice), EncryptedType, nil, json.RawMessage(content))
	h.send([]json.RawMessage{echo}, nil)
	for _, p := range []id.UserID{alice, carol} {
		d, err := h.s.Delivery(h.ctx, p, eid)
		if err != nil || d == nil || d.Kind != KindMessage || d.SenderDevice != "ALICE1" {
			t.Errorf("%s: echo delivered as %+v (%v)", p, d, err)
		}
	}
}

// TestRunMeetsDelivered: a run of messages (plain inserts) that meets one
// delivered before fails with errRedelivered, and once its savepoint is
// rolled back nothing of it remains and the transaction goes on; a lone
// message delivered before is a copy, given to nobody (carol, who had
// not had it, neither: it is the room's message of before), and no log's
// numbers skip.
func TestRunMeetsDelivered(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice, carol := id.UserID("@alice:test"), id.UserID("@carol:test")
	entry := func(i int) Delivered {
		return Delivered{RoomID: "!r:test", EventID: id.EventID(fmt.Sprintf("$run%d", i)), Kind: KindMessage,
			Sender: "@bob:remote.test", SenderDevice: "BOB", Type: "m.room.message", Content: json.RawMessage(`{"body":"x"}`)}
	}
	deliver := func(tx pgx.Tx, to []id.UserID, ds ...Delivered) ([]id.UserID, error) {
		return h.s.deliverAll(h.ctx, &inbound.Work{Q: tx}, to, ds)
	}
	err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
		if got, err := deliver(tx, []id.UserID{alice}, entry(1)); err != nil || !slices.Equal(got, []id.UserID{alice}) {
			t.Fatalf("first delivery: %v, %v", got, err)
		}
		sp, err := tx.Begin(h.ctx)
		if err != nil {
			return err
		}
		if _, err := deliver(sp, []id.UserID{alice, carol}, entry(0), entry(1), entry(2)); !errors.Is(err, errRedelivered) {
			t.Fatalf("a run meeting alice's entry: %v", err)
		}
		if err := sp.Rollback(h.ctx); err != nil {
			return err
		}
		got, err := deliver(tx, []id.UserID{alice, carol}, entry(1))
		if err != nil || len(got) != 0 {
			t.Fatalf("the lone entry again: delivered to %v, %v", got, err)
		}
		got, err = deliver(tx, []id.UserID{carol, alice}, entry(3), entry(4))
		if err != nil || !slices.Equal(got, []id.UserID{alice, carol}) {
			t.Fatalf("a new run: delivered to %v, %v", got, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[id.UserID][]id.EventID{alice: {"$run1", "$run3", "$run4"}, carol: {"$run3", "$run4"}} {
		log := h.fullLog(p, 10)
		var got []id.EventID
		for i, d := range log {
			if d.Seq != int64(i+1) {
				t.Errorf("%s: entry %d has seq %d", p, i, d.Seq)
			}
			got = append(got, d.EventID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s's log: %v, want %v", p, got, want)
		}
	}
}

// TestConcurrentDeliveriesNumberEachLog: transactions delivering at once
// to overlapping sets of puppets, each holding its puppets' cursors to
// its commit, neither deadlock (advance locks cursors in one order) nor
// give a number twice or skip one: each puppet's log is numbered 1 to
// the count of what it was given, each entry once.
func TestConcurrentDeliveriesNumberEachLog(t *testing.T) {
	h := newHarness(t, harnessOptions{Quiet: true})
	const (
		writers = 4
		each    = 30
		puppets = 24
	)
	all := make([]id.UserID, puppets)
	for i := range all {
		all[i] = id.UserID(fmt.Sprintf("@p%02d:test", i))
	}
	var (
		mu    sync.Mutex
		given = map[id.UserID]int{}
		m     entryMaker
	)
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			room := id.RoomID(fmt.Sprintf("!r%d:test", w))
			for range each {
				to := slices.Clone(all)
				rng.Shuffle(len(to), func(i, j int) { to[i], to[j] = to[j], to[i] })
				to = to[:1+rng.IntN(puppets)]
				kind := KindMessage
				if rng.IntN(3) == 0 {
					kind = KindUndecryptable
				}
				mu.Lock()
				d := m.next(room, kind)
				mu.Unlock()
				err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
					got, err := h.s.deliverAll(h.ctx, &inbound.Work{Q: tx}, to, []Delivered{d})
					if err == nil && len(got) != len(to) {
						err = fmt.Errorf("%d of %d puppets given %s", len(got), len(to), d.EventID)
					}
					return err
				})
				if err != nil {
					errs[w] = err
					return
				}
				mu.Lock()
				for _, p := range to {
					given[p]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		log := h.fullLog(p, 50)
		if len(log) != given[p] {
			t.Errorf("%s: %d entries, given %d", p, len(log), given[p])
		}
		seen := map[id.EventID]bool{}
		for i, d := range log {
			if d.Seq != int64(i+1) || seen[d.EventID] {
				t.Errorf("%s: entry %d is %d %s", p, i, d.Seq, d.EventID)
			}
			seen[d.EventID] = true
		}
	}
}
