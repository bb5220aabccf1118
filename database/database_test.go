package database

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/migrations"
)

func open(t *testing.T) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, testenv.Database(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func TestMigrateFreshAndAgain(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	ms, err := LoadMigrations(migrations.FS())
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		v, err := db.Migrate(ctx, migrations.FS())
		if err != nil {
			t.Fatal(err)
		}
		if v != len(ms) {
			t.Fatalf("at version %d, want %d", v, len(ms))
		}
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM schema_version`).Scan(&rows); err != nil || rows != len(ms) {
		t.Fatalf("schema_version has %d rows (%v), want %d", rows, err, len(ms))
	}
}

func TestMigrateRefusesNewerDatabase(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	newer := fstest.MapFS{
		"0001_a.sql": {Data: []byte(`CREATE TABLE a (x int);`)},
		"0002_b.sql": {Data: []byte(`CREATE TABLE b (x int);`)},
	}
	if _, err := db.Migrate(ctx, newer); err != nil {
		t.Fatal(err)
	}
	older := fstest.MapFS{"0001_a.sql": newer["0001_a.sql"]}
	_, err := db.Migrate(ctx, older)
	if err == nil || !strings.Contains(err.Error(), "version 2 but this binary knows only up to 1") {
		t.Fatalf("error %v, want a refusal naming both versions", err)
	}
}

func TestMigrateRollsBackAFailingMigration(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	bad := fstest.MapFS{
		"0001_a.sql": {Data: []byte(`CREATE TABLE a (x int);`)},
		"0002_b.sql": {Data: []byte(`CREATE TABLE b (x nosuchtype);`)},
	}
	if _, err := db.Migrate(ctx, bad); err == nil || !strings.Contains(err.Error(), "0002_b.sql") {
		t.Fatalf("error %v, want one naming the failing file", err)
	}
	var exists bool
	if err := db.Pool.QueryRow(ctx, `SELECT to_regclass('a') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Fatalf("table a exists after a failed run (%v): migrations are not one transaction", err)
	}
}

func TestLoadMigrationsRejectsGaps(t *testing.T) {
	_, err := LoadMigrations(fstest.MapFS{
		"0001_a.sql": {Data: []byte(`SELECT 1`)},
		"0003_c.sql": {Data: []byte(`SELECT 1`)},
	})
	if err == nil || !strings.Contains(err.Error(), "0003_c.sql") {
		t.Fatalf("error %v, want one naming the file after the gap", err)
	}
}

func TestOpenUnreachableNamesAddressNotPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	_, err := Open(ctx, "postgres://mls:hunter2secret@127.0.0.1:1/mls?sslmode=disable&connect_timeout=3", 2)
	if err == nil {
		t.Fatal("connected to nothing")
	}
	msg := err.Error()
	if !strings.Contains(msg, "postgres://mls@127.0.0.1:1/mls") {
		t.Errorf("error %q does not name the address", msg)
	}
	if strings.Contains(msg, "hunter2secret") {
		t.Errorf("error %q reveals the password", msg)
	}
}

func TestSaveTransactionIsIdempotent(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}
	first, err := db.SaveTransaction(ctx, "t1", []byte(`{"events":[]}`))
	if err != nil || !first {
		t.Fatalf("first save: %v %v", first, err)
	}
	again, err := db.SaveTransaction(ctx, "t1", []byte(`{"events":[1]}`))
	if err != nil || again {
		t.Fatalf("repeated save: %v %v", again, err)
	}
	var body string
	if err := db.Pool.QueryRow(ctx, `SELECT convert_from(body, 'UTF8') FROM appservice_transaction WHERE txn_id = 't1'`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	if body != `{"events":[]}` {
		t.Errorf("stored body %s, want the first one", body)
	}
}

func TestOutboxOrderAndFailures(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, body := range []string{`{"n":1}`, `{"n":2}`, `{"n":3}`} {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id, err := EnqueueEvent(ctx, tx, OutgoingEvent{UserID: "@mls_a:hs", DeviceID: "D", RoomID: "!r:hs",
			EventType: "m.room.message", Content: []byte(body)})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if ids[0] == ids[1] || !strings.HasPrefix(ids[0], "mlsas.") {
		t.Fatalf("transaction ids %v are not unique", ids)
	}
	next := func() *OutgoingEvent {
		t.Helper()
		ev, err := db.NextOutgoing(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	ev := next()
	if ev.TxnID != ids[0] {
		t.Fatalf("next is %s, want the oldest %s", ev.TxnID, ids[0])
	}
	// A transient failure keeps the event first in line.
	if err := db.MarkSendFailed(ctx, ev.Seq, "timeout", false); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.TxnID != ids[0] || ev.Attempts != 1 {
		t.Fatalf("after a transient failure next is %s (attempts %d)", ev.TxnID, ev.Attempts)
	}
	if err := db.MarkSent(ctx, ev.Seq, "$e1"); err != nil {
		t.Fatal(err)
	}
	ev = next()
	if ev.TxnID != ids[1] {
		t.Fatalf("next is %s, want %s", ev.TxnID, ids[1])
	}
	// A permanent failure lets the next event go.
	if err := db.MarkSendFailed(ctx, ev.Seq, "M_FORBIDDEN", true); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.TxnID != ids[2] {
		t.Fatalf("after a permanent failure next is %s, want %s", ev.TxnID, ids[2])
	}
}
