package groups

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/inbound"
)

// TestLogMergesSpansAndRows: a puppet's log read back from its own rows
// (membership, MLS state, and messages as stored before migration 0025)
// and its spans over two rooms' logs is what was delivered, in order and
// numbered without gaps, whatever the page size and direction: Log,
// RoomLog, Delivery and LogAfter agree. A span whose message is missing
// from its room's log is an error, not a short page.
func TestLogMergesSpansAndRows(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice, carol := id.UserID("@alice:test"), id.UserID("@carol:test")
	roomA, roomB := id.RoomID("!a:test"), id.RoomID("!b:test")
	want := map[id.UserID][]Delivered{}
	var m entryMaker
	entry := m.next
	step := func(tx pgx.Tx, legacy bool, to []id.UserID, ds ...Delivered) {
		t.Helper()
		w := &inbound.Work{Q: tx}
		var got []id.UserID
		var err error
		if legacy {
			got, err = h.s.deliverEach(h.ctx, w, userIDs(to), ds[0])
		} else {
			got, err = h.s.deliverAll(h.ctx, w, to, ds)
		}
		if err != nil || len(got) != len(to) {
			t.Fatalf("deliver %s: to %v, %v", ds[0].EventID, got, err)
		}
		for _, p := range to {
			for _, d := range ds {
				d.Puppet, d.Seq = p, int64(len(want[p])+1)
				want[p] = append(want[p], d)
			}
		}
	}
	run := func(room id.RoomID, k int) []Delivered {
		var ds []Delivered
		for range k {
			ds = append(ds, entry(room, KindMessage))
		}
		return ds
	}
	both := []id.UserID{alice, carol}
	if err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
		step(tx, true, both, entry(roomA, KindMessage)) // as delivered before the room log
		step(tx, false, both, run(roomA, 5)...)
		step(tx, false, []id.UserID{alice}, entry(roomA, KindMembership))
		step(tx, true, []id.UserID{carol}, entry(roomA, KindMembership)) // as delivered before migration 0029
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
		step(tx, false, []id.UserID{alice}, run(roomB, 3)...)
		step(tx, true, []id.UserID{carol}, entry(roomB, KindMessage))
		step(tx, false, both, entry(roomA, KindMessage))
		step(tx, false, []id.UserID{alice}, entry(roomB, KindMLSState))
		step(tx, false, []id.UserID{carol}, entry(roomB, KindUndecryptable))
		step(tx, false, []id.UserID{carol, alice}, run(roomA, 4)...)
		step(tx, false, both, run(roomB, 2)...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	same := func(got, want Delivered) bool {
		return got.Puppet == want.Puppet && got.Seq == want.Seq && got.RoomID == want.RoomID && got.EventID == want.EventID &&
			got.Kind == want.Kind && got.Sender == want.Sender && got.SenderDevice == want.SenderDevice &&
			got.Type == want.Type && string(got.Content) == string(want.Content) && got.OriginServerTS == want.OriginServerTS &&
			!got.DeliveredAt.IsZero()
	}
	for _, p := range both {
		for page := 1; page <= 7; page++ {
			got := h.fullLog(p, page)
			if len(got) != len(want[p]) {
				t.Fatalf("%s, pages of %d: %d entries, want %d", p, page, len(got), len(want[p]))
			}
			for i := range got {
				if !same(got[i], want[p][i]) {
					t.Fatalf("%s, pages of %d: entry %d is %+v, want %+v", p, page, i, got[i], want[p][i])
				}
			}
		}
		for _, room := range []id.RoomID{roomA, roomB} {
			var inRoom []Delivered
			for _, d := range want[p] {
				if d.RoomID == room {
					inRoom = append(inRoom, d)
				}
			}
			slices.Reverse(inRoom)
			for page := 1; page <= 4; page++ {
				var back []Delivered
				for before := int64(0); ; {
					got, err := h.s.RoomLog(h.ctx, p, room, before, page)
					if err != nil {
						t.Fatal(err)
					}
					if len(got) > page {
						t.Fatalf("RoomLog returned %d for a page of %d", len(got), page)
					}
					if len(got) == 0 {
						break
					}
					back = append(back, got...)
					before = got[len(got)-1].Seq
				}
				if len(back) != len(inRoom) {
					t.Fatalf("%s in %s, pages of %d: %d entries, want %d", p, room, page, len(back), len(inRoom))
				}
				for i := range back {
					if !same(back[i], inRoom[i]) {
						t.Fatalf("%s in %s, pages of %d: entry %d is %+v, want %+v", p, room, page, i, back[i], inRoom[i])
					}
				}
			}
		}
		for _, w := range want[p] {
			d, err := h.s.Delivery(h.ctx, p, w.EventID)
			if err != nil || d == nil || !same(*d, w) {
				t.Errorf("%s: Delivery of %s: %+v, %v; want %+v", p, w.EventID, d, err, w)
			}
		}
	}
	// The first run in room B went to alice only.
	if d, err := h.s.Delivery(h.ctx, carol, want[alice][7].EventID); err != nil || d != nil {
		t.Errorf("carol: Delivery of alice's %s: %+v, %v", want[alice][7].EventID, d, err)
	}

	// LogAfter: each puppet's entries after its position, in order.
	after := map[id.UserID]int64{alice: 3, carol: 0}
	refs, err := LogAfter(h.ctx, h.db, after, 100)
	if err != nil {
		t.Fatal(err)
	}
	next := map[id.UserID]int64{alice: 4, carol: 1}
	for _, r := range refs {
		if r.Seq != next[r.Puppet] {
			t.Fatalf("LogAfter: %s's entry %d, want %d", r.Puppet, r.Seq, next[r.Puppet])
		}
		next[r.Puppet]++
	}
	for _, p := range both {
		if next[p] != int64(len(want[p])+1) {
			t.Errorf("LogAfter: %s's entries end before %d, want %d", p, next[p], len(want[p])+1)
		}
	}
	if refs, err := LogAfter(h.ctx, h.db, after, 5); err != nil || len(refs) != 5 {
		t.Errorf("LogAfter with a limit of 5: %d, %v", len(refs), err)
	}

	// A message its span names, gone from the room's log.
	h.exec(`DELETE FROM room_entry WHERE event_id = $1`, string(want[carol][2].EventID))
	if _, err := h.s.Log(h.ctx, carol, 0, 100); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a span's message missing: %v", err)
	}
}
