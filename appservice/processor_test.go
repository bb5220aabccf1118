package appservice

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

func TestProcessorRecordsEffectsInOrder(t *testing.T) {
	db := testDB(t)
	ctx := context.Background()
	metrics := NewMetrics(prometheus.NewRegistry())
	p := NewProcessor(db, metrics, zerolog.New(zerolog.NewTestWriter(t)))

	bodies := []struct{ id, body string }{
		{"1", `{"events": [
			{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$j", "sender": "@a:hs", "state_key": "@a:hs", "content": {"membership": "join"}},
			{"type": "m.room.member", "room_id": "!s:hs", "event_id": "$i", "sender": "@a:hs", "state_key": "@b:hs", "content": {"membership": "invite"}}]}`},
		{"2", `{"events": [
			{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$l", "sender": "@a:hs", "state_key": "@a:hs", "content": {"membership": "leave"}},
			{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$bad", "sender": "@a:hs", "content": {"membership": "join"}}],
			"de.sorunome.msc2409.to_device": [{"type": "m.room.encrypted", "sender": "@b:hs", "to_user_id": "@a:hs", "to_device_id": "D", "content": {}}],
			"ephemeral": [{"type": "m.typing", "room_id": "!r:hs", "content": {"user_ids": []}}],
			"de.sorunome.msc2409.ephemeral": [{"type": "m.typing", "room_id": "!r:hs", "content": {"user_ids": []}}],
			"org.matrix.msc3202.device_lists": {"changed": ["@b:hs"], "left": ["@c:hs"]},
			"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"signed_curve25519": 4, "org.matrix.msc2883.v1.dmls.key_package.1": 9}}},
			"org.matrix.msc3202.device_unused_fallback_key_types": {"@a:hs": {"D": ["org.matrix.msc2883.v1.dmls.key_package.1"]}}}`},
	}
	for _, b := range bodies {
		if _, err := db.SaveTransaction(ctx, b.id, []byte(b.body)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		did, err := p.ProcessNext(ctx)
		if err != nil || !did {
			t.Fatalf("transaction %d: %v %v", i, did, err)
		}
	}
	if did, err := p.ProcessNext(ctx); err != nil || did {
		t.Fatalf("a third transaction was processed: %v %v", did, err)
	}

	for _, c := range []struct{ room, user, want string }{
		{"!r:hs", "@a:hs", "leave"}, // the later event wins
		{"!s:hs", "@b:hs", "invite"},
	} {
		if got, err := db.Membership(ctx, c.room, c.user); err != nil || got != c.want {
			t.Errorf("membership of %s in %s = %q (%v), want %q", c.user, c.room, got, err, c.want)
		}
	}
	counts, err := db.KeyCounts(ctx, "@a:hs", "D")
	if err != nil || counts["signed_curve25519"] != 4 || counts["org.matrix.msc2883.v1.dmls.key_package.1"] != 9 {
		t.Errorf("key counts %v (%v)", counts, err)
	}
	var kinds map[string]int = map[string]int{}
	rows, err := db.Pool.Query(ctx, `SELECT kind, count(*) FROM inbound_event GROUP BY kind`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		kinds[k] = n
	}
	if kinds["room"] != 3 || kinds["to_device"] != 1 || kinds["ephemeral"] != 1 {
		t.Errorf("recorded events by kind %v, want 3 room, 1 to_device, 1 ephemeral (stable and unstable ephemeral are one list)", kinds)
	}
	var changes, fallback int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM device_list_change), (SELECT count(*) FROM device_fallback_key)`).Scan(&changes, &fallback); err != nil {
		t.Fatal(err)
	}
	if changes != 2 || fallback != 1 {
		t.Errorf("%d device list changes and %d fallback rows, want 2 and 1", changes, fallback)
	}
	var lastError *string
	if err := db.Pool.QueryRow(ctx, `SELECT last_error FROM appservice_transaction WHERE txn_id = '2'`).Scan(&lastError); err != nil {
		t.Fatal(err)
	}
	if lastError == nil {
		t.Error("the skipped malformed member event left no trace on the transaction")
	}
	if got := testutil.ToFloat64(metrics.MalformedItems); got != 1 {
		t.Errorf("malformed items metric %v, want 1", got)
	}
	if got := testutil.ToFloat64(metrics.TransactionsProcessed); got != 2 {
		t.Errorf("processed metric %v, want 2", got)
	}
}

func TestProcessorMarksUnparsableBodyAndGoesOn(t *testing.T) {
	db := testDB(t)
	ctx := context.Background()
	metrics := NewMetrics(prometheus.NewRegistry())
	p := NewProcessor(db, metrics, zerolog.New(zerolog.NewTestWriter(t)))
	// Intake refuses such bodies; one can only be stored by an older
	// binary whose parser was more lenient.
	for id, body := range map[string]string{"a": `not json`, "b": `{"events": [{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$j", "sender": "@a:hs", "state_key": "@a:hs", "content": {"membership": "join"}}]}`} {
		if _, err := db.SaveTransaction(ctx, id, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := p.ProcessNext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := db.PendingTransactions(ctx); err != nil || n != 0 {
		t.Fatalf("%d pending (%v)", n, err)
	}
	if got := testutil.ToFloat64(metrics.TransactionsFailed); got != 1 {
		t.Errorf("failed metric %v, want 1", got)
	}
	if m, _ := db.Membership(ctx, "!r:hs", "@a:hs"); m != "join" {
		t.Errorf("the transaction after the unparsable one was not applied")
	}
}
