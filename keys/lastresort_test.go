package keys

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/internal/testdb"
)

// TestLastResortOfAFailedUploadIsReplaced: a device's current last-resort
// KeyPackage whose upload the outbox gave up was never published; the
// device check drops it and makes another, uploaded by a new row. One
// whose upload is merely pending is kept.
func TestLastResortOfAFailedUploadIsReplaced(t *testing.T) {
	ctx := context.Background()
	db := testdb.Open(t, 2)
	m, _ := offlineManager(t, 1, 5, 1, 24*time.Hour)
	dev := Device{UserID: "@a:hs", DeviceID: "A"}
	execAll(ctx, t, db, []statement{
		{`INSERT INTO puppet (user_id) VALUES ($1)`, []any{dev.UserID}},
		{`INSERT INTO puppet_device (user_id, device_id) VALUES ($1, $2)`, []any{dev.UserID, dev.DeviceID}},
	})
	// check runs the device check's last-resort steps and returns the
	// current one's upload row afterwards.
	check := func() string {
		t.Helper()
		var txn string
		commitWork(ctx, t, db, func(w *inbound.Work) error {
			id, err := m.loadIdentity(ctx, w.Q, dev)
			if err != nil {
				return err
			}
			if err := m.prune(ctx, w.Q, id); err != nil {
				return err
			}
			if err := m.checkLastResort(ctx, w, id); err != nil {
				return err
			}
			txn = id.lastResort.txn
			return nil
		})
		return txn
	}
	commitWork(ctx, t, db, func(w *inbound.Work) error {
		_, err := m.EnsureIdentity(ctx, w.Q, w.Out, dev)
		return err
	})
	missing := m.cfg.Metrics.LastResortReplaced.WithLabelValues("missing")
	first := check()
	if first == "" || testutil.ToFloat64(missing) != 0 {
		t.Fatalf("a pending upload's last resort was replaced (upload row %q)", first)
	}
	if _, err := db.Exec(ctx, `UPDATE outbox SET failed_at = now() WHERE txn_id = $1`, first); err != nil {
		t.Fatal(err)
	}
	second := check()
	if second == first || testutil.ToFloat64(missing) != 1 {
		t.Fatalf("after its upload was given up: upload row %q (was %q), %v replaced as missing, want 1",
			second, first, testutil.ToFloat64(missing))
	}
	var stored int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM key_package`).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("the unpublished last resort was kept: %d rows of key_package (%v)", stored, err)
	}
}
