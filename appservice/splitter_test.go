package appservice

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/database"
)

// TestSplitterQueuesChangedKeyCounts: Synapse repeats every device's
// counts in each transaction that concerns its room; only a device's
// first counts and a change become work items, and a transaction stored
// out of this splitter's sight (a gap in the numbers) makes it pass
// everything on again.
func TestSplitterQueuesChangedKeyCounts(t *testing.T) {
	ctx := context.Background()
	db := testDB(t)
	metrics := NewMetrics(prometheus.NewRegistry())
	splitter := NewSplitter(db, metrics, 3, zerolog.New(zerolog.NewTestWriter(t)))
	txn := func(n int, counts map[string]int) {
		t.Helper()
		var devices string
		for d, c := range counts {
			if devices != "" {
				devices += ","
			}
			devices += fmt.Sprintf(`%q: {"alg": %d}`, d, c)
		}
		body := fmt.Sprintf(`{"events": [%s], "org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {%s}}}`,
			roomEvent("!r:hs", n), devices)
		if _, _, _, err := database.SaveTransaction(ctx, db, fmt.Sprintf("t%d", n), []byte(body)); err != nil {
			t.Fatal(err)
		}
		if did, err := splitter.Step(ctx); err != nil || !did {
			t.Fatalf("split transaction %d: %v, %v", n, did, err)
		}
	}
	queued := func() (items int) {
		t.Helper()
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM work_item WHERE kind = 'key_counts'`).Scan(&items); err != nil {
			t.Fatal(err)
		}
		return items
	}

	txn(1, map[string]int{"D1": 50, "D2": 50, "D3": 0})
	txn(2, map[string]int{"D1": 50, "D2": 50, "D3": 0})
	txn(3, map[string]int{"D1": 50, "D2": 50, "D3": 0})
	if n := queued(); n != 3 {
		t.Errorf("%d key count items after three transactions with the same counts of three devices, want 3", n)
	}
	txn(4, map[string]int{"D1": 49, "D2": 50, "D3": 0})
	if n := queued(); n != 4 {
		t.Errorf("%d key count items after one device's count changed, want 4", n)
	}
	if got := testutil.ToFloat64(metrics.KeyCountsUnchanged); got != 8 {
		t.Errorf("mlsas_key_counts_unchanged_total = %v, want 8", got)
	}
	// A number taken by a retry (never stored), or by a transaction
	// another instance split: everything is passed on again.
	if _, err := db.Pool.Exec(ctx, `SELECT nextval(pg_get_serial_sequence('appservice_transaction', 'seq'))`); err != nil {
		t.Fatal(err)
	}
	txn(5, map[string]int{"D1": 49, "D2": 50, "D3": 0})
	if n := queued(); n != 7 {
		t.Errorf("%d key count items after a gap in the transactions' numbers, want 7", n)
	}
}
