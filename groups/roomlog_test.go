package groups

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"
)

// TestSpansGrow: a puppet given one message at a time in a quiet room has
// one span, grown with each message, not a span a message; a span stops
// growing at an entry of another kind or room in the puppet's log, at a
// number the room's log skipped, and spanGrowth after it began. Every
// message reads back in order with the time it was delivered, not its
// span's.
func TestSpansGrow(t *testing.T) {
	h := newHarness(t, harnessOptions{Quiet: true})
	alice, carol := id.UserID("@alice:test"), id.UserID("@carol:test")
	roomA, roomB := id.RoomID("!a:test"), id.RoomID("!b:test")
	var m entryMaker
	entry := m.next
	deliver := h.deliverNow
	spans := func(p id.UserID) string {
		t.Helper()
		rows, err := h.db.Query(h.ctx, `SELECT s.first_seq || '-' || s.first_seq + s.n - 1 FROM delivery_span s
			JOIN delivery_cursor c USING (log_no) WHERE c.user_id = $1 ORDER BY s.first_seq`, string(p))
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(got, " ")
	}
	both := []id.UserID{alice, carol}
	a1 := entry(roomA, KindMessage)
	deliver(both, a1) // 1
	deliver(both, entry(roomA, KindMessage))
	deliver(both, entry(roomA, KindMessage), entry(roomA, KindMessage)) // 3-4, a run
	deliver([]id.UserID{alice}, entry(roomA, KindUndecryptable))        // alice's 5
	deliver(both, entry(roomA, KindMessage))                            // alice's 6, carol's 5
	deliver([]id.UserID{carol}, entry(roomB, KindMessage))              // carol's 6
	deliver(both, entry(roomA, KindMessage))                            // alice's 7, carol's 7
	deliver(both, a1)                                                   // again: nobody; the room's log skips a number
	deliver(both, entry(roomA, KindMessage))                            // alice's 8, carol's 8
	if got, want := spans(alice), "1-4 6-7 8-8"; got != want {
		t.Errorf("alice's spans %s, want %s", got, want)
	}
	if got, want := spans(carol), "1-5 6-6 7-7 8-8"; got != want {
		t.Errorf("carol's spans %s, want %s", got, want)
	}
	// An hour on, a span no longer grows.
	h.exec(`UPDATE delivery_span SET created_at = created_at - $1::interval`, spanGrowth.String())
	deliver(both, entry(roomA, KindMessage))
	if got, want := spans(carol), "1-5 6-6 7-7 8-8 9-9"; got != want {
		t.Errorf("carol's spans after %v: %s, want %s", spanGrowth, got, want)
	}
	deliver(both, entry(roomA, KindMessage))
	if got, want := spans(carol), "1-5 6-6 7-7 8-8 9-10"; got != want {
		t.Errorf("carol's spans after a new one grew: %s, want %s", got, want)
	}

	want := map[id.UserID]string{
		alice: "1:$e1 2:$e2 3:$e3 4:$e4 5:$e5 6:$e6 7:$e8 8:$e9 9:$e10 10:$e11",
		carol: "1:$e1 2:$e2 3:$e3 4:$e4 5:$e6 6:$e7 7:$e8 8:$e9 9:$e10 10:$e11",
	}
	for _, p := range both {
		var got []string
		for _, d := range h.fullLog(p, 3) {
			got = append(got, fmt.Sprintf("%d:%s", d.Seq, d.EventID))
			if age := time.Since(d.DeliveredAt); age < 0 || age > time.Minute {
				t.Errorf("%s's %d delivered %v ago, want moments ago (its span is %v old)", p, d.Seq, age, spanGrowth)
			}
		}
		if g := strings.Join(got, " "); g != want[p] {
			t.Errorf("%s's log %s, want %s", p, g, want[p])
		}
		if d, err := h.s.Delivery(h.ctx, p, "$e3"); err != nil || d == nil || d.Seq != 3 || time.Since(d.DeliveredAt) > time.Minute {
			t.Errorf("%s: Delivery of $e3: %+v, %v", p, d, err)
		}
	}
	refs, err := LogAfter(h.ctx, h.db, map[id.UserID]int64{alice: 0, carol: 0}, 100)
	if err != nil || len(refs) != 20 {
		t.Fatalf("LogAfter: %d entries, %v", len(refs), err)
	}
	for _, r := range refs {
		if time.Since(r.DeliveredAt) > time.Minute {
			t.Errorf("LogAfter: %s's %d delivered %v ago", r.Puppet, r.Seq, time.Since(r.DeliveredAt))
		}
	}
}
