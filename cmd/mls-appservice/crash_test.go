package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
)

// TestCrashAfterAcknowledgeBeforeProcessing kills the service with
// SIGKILL after it has answered 200 to transactions but before it has
// processed them, restarts it, and counts effects: each event must be
// recorded exactly once.
//
// Processing is held back by taking the processing advisory lock from
// the test, the same lock another instance would hold; intake does not
// need it and keeps acknowledging. The service listens on a port of its
// own so that Synapse never sees it go down.
func TestCrashAfterAcknowledgeBeforeProcessing(t *testing.T) {
	syn := testenv.RequireSynapse(t)
	dsn := testenv.Database(t)
	cfgPath := writeConfig(t, syn.ConfigPath, dsn, freePort(t))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	svc := startService(t, cfgPath)
	db := openDB(t, dsn)

	hold, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close(ctx)
	holdTx, err := hold.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holdTx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, database.ProcessingLockKey); err != nil {
		t.Fatal(err)
	}

	const room = "!crash:localhost"
	const txns = 5
	var eventIDs []string
	bodies := map[string]any{}
	for i := 1; i <= txns; i++ {
		user := fmt.Sprintf("@mls_crash%d:localhost", i)
		member := fmt.Sprintf("$member%d", i)
		message := fmt.Sprintf("$message%d", i)
		eventIDs = append(eventIDs, member, message)
		body := map[string]any{
			"events": []any{
				map[string]any{"type": "m.room.member", "room_id": room, "event_id": member, "sender": user,
					"state_key": user, "content": map[string]any{"membership": "join"}},
				map[string]any{"type": "m.room.message", "room_id": room, "event_id": message, "sender": user,
					"content": map[string]any{"msgtype": "m.text", "body": "hello"}},
			},
		}
		bodies[fmt.Sprintf("crash-%d", i)] = body
		putTransaction(t, svc.base, cfg.AppService.HSToken, fmt.Sprintf("crash-%d", i), body)
	}
	// The homeserver retries until it sees 200, with the same body: a
	// no-op.
	putTransaction(t, svc.base, cfg.AppService.HSToken, "crash-2", bodies["crash-2"])

	var stored, pending, effects int
	err = db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE processed_at IS NULL),
		(SELECT count(*) FROM inbound_event) FROM appservice_transaction`).Scan(&stored, &pending, &effects)
	if err != nil {
		t.Fatal(err)
	}
	if stored != txns || pending != txns || effects != 0 {
		t.Fatalf("before the crash: %d stored, %d pending, %d effects; want %d, %d, 0", stored, pending, effects, txns, txns)
	}

	svc.kill(t)
	if err := holdTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	svc = startService(t, cfgPath)
	putTransaction(t, svc.base, cfg.AppService.HSToken, "crash-3", map[string]any{"events": []any{}})
	eventually(t, 30*time.Second, "all transactions processed after restart", func() (bool, error) {
		n, err := database.PendingTransactions(ctx, db)
		if err != nil || n != 0 {
			return false, err
		}
		b, err := database.ReadBacklog(ctx, db)
		return b.Items == 0, err
	})

	for _, id := range eventIDs {
		var n int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM inbound_event WHERE event_id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("event %s recorded %d times, want exactly once", id, n)
		}
	}
	var total, attempts int
	err = db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM inbound_event), max(attempts) FROM appservice_transaction`).
		Scan(&total, &attempts)
	if err != nil {
		t.Fatal(err)
	}
	if total != 2*txns || attempts != 1 {
		t.Errorf("%d effects and at most %d attempts per transaction; want %d and 1", total, attempts, 2*txns)
	}
	for i := 1; i <= txns; i++ {
		m, err := database.Membership(ctx, db, room, fmt.Sprintf("@mls_crash%d:localhost", i))
		if err != nil {
			t.Fatal(err)
		}
		if m != "join" {
			t.Errorf("membership of crash user %d is %q, want join", i, m)
		}
	}
}
