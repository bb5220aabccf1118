package groups

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
		waiting, err := h.s.recoverOrphans(h.ctx, tx, r)
		if waiting {
			t.Error("recoverOrphans reports a wait with no orphan")
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
