package groups

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
)

// TestLogRetention: entries older than groups.log_retention leave the
// puppets' logs (a run's messages and their spans, and rows of their own),
// newer ones stay with their numbers, and a reader resuming after an
// entry that is gone continues at the oldest one kept. A span read just
// before retention deleted its messages reads as nothing if they were
// that old, and is still an error otherwise. With no retention nothing
// goes.
func TestLogRetention(t *testing.T) {
	h := newHarness(t, harnessOptions{Quiet: true})
	alice, carol := id.UserID("@alice:test"), id.UserID("@carol:test")
	room := id.RoomID("!a:test")
	var m entryMaker
	entry := func(kind Kind) Delivered { return m.next(room, kind) }
	deliver := h.deliverNow
	age := func(by time.Duration) {
		t.Helper()
		for _, table := range []string{"room_entry", "delivery_span", "delivery"} {
			h.exec(`UPDATE `+table+` SET created_at = created_at - $1::interval`, by.String())
		}
	}
	both := []id.UserID{alice, carol}
	deliver(both, entry(KindMessage), entry(KindMessage), entry(KindMessage)) // seqs 1-3
	deliver([]id.UserID{alice}, entry(KindUndecryptable))                     // alice's 4
	age(49 * time.Hour)
	deliver(both, entry(KindMessage)) // alice's 5, carol's 4
	age(time.Hour)
	deliver(both, entry(KindMessage), entry(KindMessage)) // alice's 6-7, carol's 5-6
	deliver([]id.UserID{alice}, entry(KindUndecryptable)) // alice's 8

	// The service schedules retention at its start, and a restart keeps
	// the schedule.
	for range 2 {
		if err := h.s.Start(h.ctx); err != nil {
			t.Fatal(err)
		}
	}
	var scheduled int
	if err := h.db.QueryRow(h.ctx, `SELECT count(*) FROM timer WHERE kind = $1 AND key = 'all'`, timerLogRetention).Scan(&scheduled); err != nil || scheduled != 1 {
		t.Fatalf("%d log retention timers after two starts, %v", scheduled, err)
	}
	timer := logRetentionTimer{h.s}
	run := func() {
		t.Helper()
		next, err := timer.Timer(h.ctx, nil, database.Timer{})
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Until(next); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("next run in %v, want an hour", d)
		}
	}
	count := func() string {
		t.Helper()
		var spans, entries, rows int
		if err := h.db.QueryRow(h.ctx, `SELECT (SELECT count(*) FROM delivery_span), (SELECT count(*) FROM room_entry),
			(SELECT count(*) FROM delivery)`).Scan(&spans, &entries, &rows); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%d spans, %d entries, %d rows", spans, entries, rows)
	}
	seqs := func(p id.UserID, after int64) string {
		t.Helper()
		got, err := h.s.Log(h.ctx, p, after, 100)
		if err != nil {
			t.Fatalf("log of %s after %d: %v", p, after, err)
		}
		var s []string
		for _, d := range got {
			s = append(s, fmt.Sprintf("%d:%s", d.Seq, d.EventID))
		}
		return strings.Join(s, " ")
	}

	h.s.cfg.LogRetention = 0
	run()
	if got, want := count(), "6 spans, 6 entries, 2 rows"; got != want {
		t.Fatalf("with no retention: %s, want %s", got, want)
	}

	h.s.cfg.LogRetention = 48 * time.Hour
	h.s.cfg.LogBatch = 1 // several statements a table
	run()
	if got, want := count(), "4 spans, 3 entries, 1 rows"; got != want {
		t.Errorf("after retention: %s, want %s", got, want)
	}
	for table, want := range map[string]float64{"delivery_span": 2, "room_entry": 3, "delivery": 1} {
		if got := counter(h.metrics.LogPruned.WithLabelValues(table)); got != want {
			t.Errorf("%s: %v rows counted as pruned, want %v", table, got, want)
		}
	}
	wantAlice := "5:$e5 6:$e6 7:$e7 8:$e8"
	for _, after := range []int64{0, 2, 4} {
		if got := seqs(alice, after); got != wantAlice {
			t.Errorf("alice's log after %d: %s, want %s", after, got, wantAlice)
		}
	}
	if got, want := seqs(carol, 0), "4:$e5 5:$e6 6:$e7"; got != want {
		t.Errorf("carol's log: %s, want %s", got, want)
	}
	if d, err := h.s.Delivery(h.ctx, alice, "$e1"); err != nil || d != nil {
		t.Errorf("Delivery of a pruned message: %+v, %v", d, err)
	}

	// Retention took the messages of a span that a read had already
	// found: as old as the retention, they are gone for the read too.
	age(48 * time.Hour) // $e5 to $e8 now 48 to 98 hours old
	h.exec(`DELETE FROM room_entry WHERE event_id = '$e5'`)
	if got, want := seqs(carol, 0), "5:$e6 6:$e7"; got != want {
		t.Errorf("carol's log without an old span's message: %s, want %s", got, want)
	}
	// A newer span's message missing is an error still.
	h.exec(`UPDATE delivery_span SET created_at = now() WHERE first_no = (SELECT no FROM room_entry WHERE event_id = '$e6')`)
	h.exec(`DELETE FROM room_entry WHERE event_id = '$e6'`)
	if _, err := h.s.Log(h.ctx, carol, 0, 100); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a recent span's message missing: %v", err)
	}
}
