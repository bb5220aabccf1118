package groups

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// TestOrphanRecordCleared: a device of ours that was an orphan for a
// while (in the group, its Welcome late) and then got its keys loses its
// record at the next reconcile, so that a wait later it is not excluded
// from the room's view and removed while its user is still in the room
// (seen in the federated test, seed 1, when no device was an orphan any
// more and the delete matched nothing).
func TestOrphanRecordCleared(t *testing.T) {
	h, bob, _, alice := badInputRoom(t)
	if _, err := h.db.Exec(h.ctx, `INSERT INTO dmls_orphan (room_id, device, since) VALUES ($1, $2, $3)`,
		bob.room, alice.Identity(), time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
		r, err := h.s.loadRoom(h.ctx, tx, bob.room)
		if err != nil {
			return err
		}
		next, err := h.s.recoverOrphans(h.ctx, tx, r)
		if !next.IsZero() {
			t.Errorf("recoverOrphans reports a wait until %v with no orphan", next)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := h.db.QueryRow(h.ctx, `SELECT count(*) FROM dmls_orphan WHERE room_id = $1`, bob.room).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d orphan records left for a room whose devices all hold their keys", n)
	}
}

// TestOrphanWaitDoubles: our carol is added by bob's commit, but her
// Welcome does not come. Alice, ours too, removes her a wait later; a
// device removed once before waits twice as long, and a Welcome that
// comes late does not reset the count. A fixed wait removed and added the
// same devices again and again when a backlogged homeserver delivered
// every Welcome later than the wait (1,000 puppets in 100 rooms).
func TestOrphanWaitDoubles(t *testing.T) {
	for _, tc := range []struct {
		name string
		// removals before this orphan state
		before int
		// late: carol's Welcome comes after one wait
		late bool
		// queued: a to-device message for carol is still in our queue
		// when her wait ends
		queued bool
	}{
		{name: "first removal after one wait"},
		{name: "second removal after two waits", before: 1},
		{name: "late Welcome keeps the count", before: 1, late: true},
		{name: "a message still queued for her restarts the wait", queued: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, bob, _, aliceDev := badInputRoom(t)
			carol := h.puppet("carol", "CAROL1")
			carolDev := epochs.Device{UserID: string(carol), DeviceID: "CAROL1"}
			if tc.before > 0 {
				if _, err := h.db.Exec(h.ctx, `INSERT INTO dmls_orphan (room_id, device, removals, updated_at) VALUES ($1, $2, $3, now())`,
					bob.room, carolDev.Identity(), tc.before); err != nil {
					t.Fatal(err)
				}
			}
			inv, _ := h.member(bob.room, bob.dev.UserID, string(carol), "invite")
			join, _ := h.member(bob.room, string(carol), string(carol), "join")
			h.send([]json.RawMessage{inv, join}, nil)
			_, ev, _, wel := bob.commit(view(bob.dev, aliceDev, carolDev),
				map[epochs.Device]*message.KeyPackage{carolDev: h.keyPackage(carolDev)})
			h.send([]json.RawMessage{ev}, nil)
			ours := func() int {
				return h.count(`SELECT count(*) FROM outbox WHERE kind = 'room_event' AND room_id = $1 AND hook = $2`, bob.room, HookName)
			}
			record := func() (orphan bool, removals int) {
				t.Helper()
				var since *time.Time
				if err := h.db.QueryRow(h.ctx, `SELECT since, removals FROM dmls_orphan WHERE room_id = $1 AND device = $2`,
					bob.room, carolDev.Identity()).Scan(&since, &removals); err != nil {
					t.Fatalf("carol's orphan record: %v", err)
				}
				return since != nil, removals
			}

			h.runCommitTimer(bob.room)
			if orphan, n := record(); !orphan || n != tc.before || ours() != 0 {
				t.Fatalf("at once: orphan %v, removals %d, %d commits of ours", orphan, n, ours())
			}
			h.advance(h.s.cfg.Wait + time.Second)
			if tc.late {
				h.send(nil, []json.RawMessage{toDevice(bob.dev.UserID, carolDev, wel)})
				if orphan, n := record(); orphan || n != tc.before {
					t.Errorf("after her Welcome: orphan %v, removals %d, want false, %d", orphan, n, tc.before)
				}
				h.runCommitTimer(bob.room)
				if ours() != 0 || counter(h.metrics.OrphansRemoved) != 0 {
					t.Errorf("carol, holding her keys, was removed")
				}
				return
			}
			if tc.queued {
				queue := inbound.DeviceQueue(carol, "CAROL1")
				if _, err := h.db.Exec(h.ctx, `INSERT INTO work_item (queue, kind, payload) VALUES ($1, $2, '{}')`,
					queue, inbound.KindToDevice); err != nil {
					t.Fatal(err)
				}
				h.runCommitTimer(bob.room)
				if orphan, _ := record(); !orphan || ours() != 0 {
					t.Fatalf("carol removed while a message for her is queued (%d commits)", ours())
				}
				if _, err := h.db.Exec(h.ctx, `DELETE FROM work_item WHERE queue = $1`, queue); err != nil {
					t.Fatal(err)
				}
				h.runCommitTimer(bob.room)
				if ours() != 0 {
					t.Fatal("carol removed before a wait from when her queue emptied")
				}
				h.advance(h.s.cfg.Wait)
			}
			for range tc.before {
				h.runCommitTimer(bob.room)
				if ours() != 0 {
					t.Fatalf("carol removed after one wait, removed %d times before", tc.before)
				}
				h.advance(h.s.cfg.Wait)
			}
			h.runCommitTimer(bob.room)
			if ours() != 1 {
				t.Fatalf("%d commits of ours a wait after carol's was over", ours())
			}
			if orphan, n := record(); orphan || n != tc.before+1 {
				t.Errorf("after her removal: orphan %v, removals %d, want false, %d", orphan, n, tc.before+1)
			}
			if got := counter(h.metrics.OrphansRemoved); got != 1 {
				t.Errorf("mlsas_dmls_orphans_removed_total %v, want 1", got)
			}
		})
	}
}

// runCommitTimer runs the room's commit timer now.
func (h *harness) runCommitTimer(room id.RoomID) {
	h.t.Helper()
	h.inWork(func(w *inbound.Work) error {
		_, err := (commitTimer{h.s}).Timer(h.ctx, w, database.Timer{Kind: timerCommit, Key: string(room),
			Queue: roomQueue(room), DueAt: h.s.now()})
		return err
	})
}
