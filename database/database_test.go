package database

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/migrations"
)

func open(t *testing.T) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := Open(ctx, testenv.Database(t), Options{MaxConns: 8})
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

// TestBodiesCompressWithLZ4: migration 0019 sets LZ4 on the columns that
// hold the homeserver's JSON (this PostgreSQL is built with it), and a
// transaction body stored afterwards is compressed with it.
func TestBodiesCompressWithLZ4(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ table, column string }{
		{"appservice_transaction", "body"}, {"inbound_event", "raw"}, {"work_item", "payload"},
	} {
		var method string
		if err := db.Pool.QueryRow(ctx, `SELECT attcompression FROM pg_attribute
			WHERE attrelid = $1::regclass AND attname = $2`, c.table, c.column).Scan(&method); err != nil {
			t.Fatal(err)
		}
		if method != "l" {
			t.Errorf("%s.%s compresses with %q, want l (LZ4)", c.table, c.column, method)
		}
	}
	body := []byte(`{"events":[` + strings.Repeat(`{"type":"m.room.encrypted","content":{"ciphertext":"AAAA"}},`, 200) + `{}]}`)
	if _, _, _, err := SaveTransaction(ctx, db.Pool, "lz4", body); err != nil {
		t.Fatal(err)
	}
	var method string
	if err := db.Pool.QueryRow(ctx, `SELECT coalesce(pg_column_compression(body), '') FROM appservice_transaction
		WHERE txn_id = 'lz4'`).Scan(&method); err != nil || method != "lz4" {
		t.Errorf("a stored body is compressed with %q (%v), want lz4", method, err)
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
	_, err := Open(ctx, "postgres://mls:hunter2secret@127.0.0.1:1/mls?sslmode=disable", Options{MaxConns: 2, ConnectTimeout: 3 * time.Second})
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

func migrated(t *testing.T) *DB {
	t.Helper()
	db := open(t)
	if _, err := db.Migrate(context.Background(), migrations.FS()); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestSaveTransactionRepeatAndReuse(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	steps := []struct {
		txnID, body      string
		inserted, reused bool
	}{
		{"t1", `{"events":[]}`, true, false},
		{"t1", `{"events":[]}`, false, false}, // the homeserver retrying
		{"t1", `{"events":[1]}`, true, true},  // the homeserver restarted its counter
		{"t1", `{"events":[1]}`, false, false},
		{"t2", `{"events":[]}`, true, false},
	}
	for i, s := range steps {
		_, inserted, reused, err := SaveTransaction(ctx, db, s.txnID, []byte(s.body))
		if err != nil {
			t.Fatal(err)
		}
		if inserted != s.inserted || reused != s.reused {
			t.Errorf("step %d (%s %s): inserted %v reused %v, want %v %v", i, s.txnID, s.body, inserted, reused, s.inserted, s.reused)
		}
	}
	if n, err := PendingTransactions(ctx, db); err != nil || n != 3 {
		t.Fatalf("%d pending transactions (%v), want 3", n, err)
	}
}

// inTx runs fn in a transaction that the test commits.
func inTx(t *testing.T, db *DB, fn func(tx pgx.Tx) error) {
	t.Helper()
	if err := db.InTx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func TestQueueClaimIsExclusiveAndOrdered(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		for _, q := range []string{"in:room:!a", "in:room:!b", "in:room:!a"} {
			if _, err := p.AddItem(ctx, Item{Queue: q, Kind: "k", Payload: []byte(q)}); err != nil {
				return err
			}
		}
		return p.Flush(ctx)
	})
	// Two workers at once: each gets a different queue, a third none.
	tx1, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback(ctx)
	tx2, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx2.Rollback(ctx)
	tx3, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx3.Rollback(ctx)
	q1, err := ClaimQueue(ctx, tx1, Inbound)
	if err != nil {
		t.Fatal(err)
	}
	q2, err := ClaimQueue(ctx, tx2, Inbound)
	if err != nil {
		t.Fatal(err)
	}
	q3, err := ClaimQueue(ctx, tx3, Inbound)
	if err != nil {
		t.Fatal(err)
	}
	if q1 == "" || q2 == "" || q1 == q2 || q3 != "" {
		t.Fatalf("claims %q %q %q: want two different queues and then none", q1, q2, q3)
	}
	if got, err := ClaimQueue(ctx, tx3, Outbound); err != nil || got != "" {
		t.Fatalf("outbound claim %q %v with no outbound work", got, err)
	}
	// The holder of !a sees its items in order and finishes them.
	holder := tx1
	if q2 == "in:room:!a" {
		holder = tx2
	}
	items, err := HeadItems(ctx, holder, "in:room:!a", 10)
	if err != nil || len(items) != 2 || items[0].Seq >= items[1].Seq {
		t.Fatalf("items of !a: %+v (%v)", items, err)
	}
	p := NewProducer(holder)
	if err := ItemsDone(ctx, holder, p, "in:room:!a", []int64{items[0].Seq, items[1].Seq}, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := ReadBacklog(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if b.Items != 1 || b.QueuesWithItems != 1 {
		t.Fatalf("backlog %+v, want one item in one queue", b)
	}
}

// TestAddItemsInOrder: items added in one statement take ascending
// sequence numbers in the order given, each queue's head is its first,
// and the queues' counters count them; a bad item adds nothing.
func TestAddItemsInOrder(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	queues := []string{"in:room:!a", "in:room:!b", "in:device:@c|D"}
	var items []Item
	for i := range 60 {
		items = append(items, Item{Queue: queues[i%3], Kind: "k", TxnSeq: int64(i / 20), EventID: fmt.Sprintf("$%d", i),
			Payload: []byte{byte(i)}})
	}
	items[7].Payload = nil // stored as empty
	items[8].RoomID = "!a"
	var seqs []int64
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		var err error
		if seqs, err = p.AddItems(ctx, items); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	if len(seqs) != len(items) || !slices.IsSorted(seqs) || seqs[0] == seqs[len(seqs)-1] {
		t.Fatalf("seqs %v", seqs)
	}
	for qi, q := range queues {
		var heads []Item
		inTx(t, db, func(tx pgx.Tx) error {
			var err error
			heads, err = HeadItems(ctx, tx, q, 100)
			return err
		})
		if len(heads) != 20 {
			t.Fatalf("%s holds %d items, want 20", q, len(heads))
		}
		for k, h := range heads {
			i := qi + 3*k
			want := items[i]
			if h.Seq != seqs[i] || h.EventID != want.EventID || h.TxnSeq != want.TxnSeq || h.RoomID != want.RoomID ||
				!bytes.Equal(h.Payload, want.Payload) || h.Payload == nil {
				t.Fatalf("%s item %d: %+v, want %+v at seq %d", q, k, h, want, seqs[i])
			}
		}
	}
	b, err := ReadBacklog(ctx, db)
	if err != nil || b.Items != 60 || b.QueuesWithItems != 3 {
		t.Fatalf("backlog %+v (%v), want 60 items in 3 queues", b, err)
	}
	inTx(t, db, func(tx pgx.Tx) error {
		_, err := NewProducer(tx).AddItems(ctx, []Item{{Queue: "in:room:!a", Kind: "k"}, {Queue: "", Kind: "k"}})
		if err == nil || !strings.Contains(err.Error(), "must not be empty") {
			t.Fatalf("an item without a queue: %v", err)
		}
		return nil
	})
	if b, err := ReadBacklog(ctx, db); err != nil || b.Items != 60 {
		t.Fatalf("backlog %+v (%v) after a refused batch, want 60 items", b, err)
	}
}

// TestFlushAddsKeepsDueTimes: a producer that only added items updates
// all its queues in one statement, and with the same effect as one by
// one: a queue in backoff keeps its due time, an idle one and a new one
// are due now, and every counter grows by what was added.
func TestFlushAddsKeepsDueTimes(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	later := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO work_queue (queue, side, pending, due_at) VALUES
		('in:room:!backoff', 'in', 1, $1), ('in:room:!idle', 'in', 0, now() - interval '1 day')`, later); err != nil {
		t.Fatal(err)
	}
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		_, err := p.AddItems(ctx, []Item{{Queue: "in:room:!new", Kind: "k"}, {Queue: "in:room:!backoff", Kind: "k"},
			{Queue: "in:room:!idle", Kind: "k"}, {Queue: "in:room:!new", Kind: "k"}})
		if err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	want := map[string]int{"in:room:!backoff": 2, "in:room:!idle": 1, "in:room:!new": 2}
	for q, pending := range want {
		var n int
		var due time.Time
		var dueNow bool
		if err := db.Pool.QueryRow(ctx, `SELECT pending, due_at, due_at <= now() FROM work_queue WHERE queue = $1`, q).
			Scan(&n, &due, &dueNow); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if n != pending {
			t.Errorf("%s: %d pending, want %d", q, n, pending)
		}
		if q == "in:room:!backoff" {
			if !due.Equal(later) {
				t.Errorf("%s: due at %v, want its backoff %v kept", q, due, later)
			}
		} else if !dueNow {
			t.Errorf("%s: due at %v, want now", q, due)
		}
	}
}

func TestParkRetryDrop(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	var seqs []int64
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		for i := range 3 {
			seq, err := p.AddItem(ctx, Item{Queue: "in:room:!p", Kind: "k", EventID: fmt.Sprintf("$%d", i), Payload: []byte("x")})
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		return p.Flush(ctx)
	})
	inTx(t, db, func(tx pgx.Tx) error {
		if err := ParkItem(ctx, tx, seqs[0], 5, "bad \x00 and \xff: "+string([]byte{0, 0xff})); err != nil {
			return err
		}
		if err := ParkItem(ctx, tx, seqs[1], 5, "also bad"); err != nil {
			return err
		}
		p := NewProducer(tx)
		if err := ItemsDone(ctx, tx, p, "in:room:!p", nil, 2, time.Now()); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	parked, err := ParkedItems(ctx, db)
	if err != nil || len(parked) != 2 || parked[0].Seq != seqs[0] || parked[0].ParkedAt.IsZero() {
		t.Fatalf("parked %+v (%v)", parked, err)
	}
	if !strings.Contains(parked[0].LastError, `\x00`) {
		t.Errorf("stored error %q lost the escaped NUL", parked[0].LastError)
	}
	if _, err := RetryParked(ctx, db, seqs[2]); !errors.Is(err, ErrNotParked) {
		t.Fatalf("retrying an unparked item: %v", err)
	}
	if _, err := RetryParked(ctx, db, seqs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := DropParked(ctx, db, seqs[1]); err != nil {
		t.Fatal(err)
	}
	var heads []Item
	inTx(t, db, func(tx pgx.Tx) error {
		var err error
		heads, err = HeadItems(ctx, tx, "in:room:!p", 10)
		return err
	})
	if len(heads) != 2 || heads[0].Seq != seqs[0] || heads[0].Attempts != 0 || heads[1].Seq != seqs[2] {
		t.Fatalf("after retry and drop: %+v", heads)
	}
	b, err := ReadBacklog(ctx, db)
	if err != nil || b.Items != 2 || b.Parked != 0 {
		t.Fatalf("backlog %+v (%v), want 2 items, none parked", b, err)
	}
}

func TestTimers(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	now := time.Now()
	sched := func(key string, due time.Time, mode Schedule) {
		t.Helper()
		if err := ScheduleTimer(ctx, db, Timer{Kind: "k", Key: key, DueAt: due}, mode); err != nil {
			t.Fatal(err)
		}
	}
	sched("a", now.Add(time.Hour), Replace)
	sched("a", now.Add(-time.Second), Earliest) // moves it earlier
	sched("a", now.Add(time.Hour), Earliest)    // does not move it later
	sched("b", now.Add(time.Hour), Replace)
	sched("b", now.Add(-time.Second), KeepExisting) // keeps the hour
	var claimed *Timer
	inTx(t, db, func(tx pgx.Tx) error {
		var err error
		claimed, err = ClaimTimer(ctx, tx)
		if err != nil || claimed == nil {
			return fmt.Errorf("claim: %v %v", claimed, err)
		}
		// A second claim in another transaction finds nothing free.
		other, err := db.Pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer other.Rollback(ctx)
		if again, err := ClaimTimer(ctx, other); err != nil || again != nil {
			return fmt.Errorf("second claim got %v (%v)", again, err)
		}
		return FinishTimer(ctx, tx, claimed, time.Time{})
	})
	if claimed.Key != "a" {
		t.Fatalf("claimed %s, want a", claimed.Key)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM timer`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d timers left (%v), want b only", n, err)
	}
	// A timer that names a queue waits while the queue is held.
	if err := ScheduleTimer(ctx, db, Timer{Kind: "k", Key: "c", Queue: "in:room:!q", DueAt: now.Add(-time.Second)}, Replace); err != nil {
		t.Fatal(err)
	}
	hold, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := LockQueue(ctx, hold, "in:room:!q", Inbound); err != nil || !got {
		t.Fatalf("lock queue: %v %v", got, err)
	}
	inTx(t, db, func(tx pgx.Tx) error {
		got, err := ClaimTimer(ctx, tx)
		if err != nil || got != nil {
			return fmt.Errorf("claimed %v (%v) while its queue is held", got, err)
		}
		return nil
	})
	hold.Rollback(ctx)
	inTx(t, db, func(tx pgx.Tx) error {
		got, err := ClaimTimer(ctx, tx)
		if err != nil || got == nil || got.Key != "c" {
			return fmt.Errorf("claimed %v (%v), want c", got, err)
		}
		return FinishTimer(ctx, tx, got, now.Add(time.Hour))
	})
}

func TestOutboxQueuesDependenciesAndFailures(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	var commit, welcome, msg1, msg2 int64
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		var err error
		if commit, _, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: RoomEvent, UserID: "@mls_a:hs", DeviceID: "D",
			RoomID: "!r:hs", EventType: "m.room.encrypted", Content: []byte(`{"n":1}`)}); err != nil {
			return err
		}
		if welcome, _, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: ToDevice, UserID: "@mls_a:hs", DeviceID: "D",
			EventType: "m.room.encrypted", ToUserID: "@b:hs", ToDeviceID: "E", Content: []byte(`{}`), After: commit,
			FillField: "commit_event", AlsoTo: map[string][]string{"@b:hs": {"F"}, "@c:hs": {"G", "H"}}}); err != nil {
			return err
		}
		if msg1, _, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: RoomEvent, UserID: "@mls_a:hs", DeviceID: "D",
			RoomID: "!r:hs", EventType: "m.room.encrypted", Content: []byte(`{"n":2}`)}); err != nil {
			return err
		}
		if msg2, _, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: RoomEvent, UserID: "@mls_a:hs", DeviceID: "D",
			RoomID: "!r:hs", EventType: "m.room.encrypted", Content: []byte(`{"n":3}`)}); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	head := func(queue string) *OutgoingEvent { t.Helper(); return outboxHead(t, db, queue) }
	w := head("out:to_device:@mls_a:hs|D")
	if w.Seq != welcome || !w.AfterPending || w.FillField != "commit_event" {
		t.Fatalf("welcome head %+v: want it waiting for the commit", w)
	}
	if want := map[string][]string{"@b:hs": {"F"}, "@c:hs": {"G", "H"}}; !reflect.DeepEqual(w.AlsoTo, want) || w.BadRecipients {
		t.Fatalf("welcome's further recipients read back as %v (bad %v), want %v", w.AlsoTo, w.BadRecipients, want)
	}
	c := head("out:room:!r:hs")
	if c.Seq != commit {
		t.Fatalf("room head %d, want the commit %d", c.Seq, commit)
	}
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		if err := OutgoingSent(ctx, tx, p, c, "$commit"); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	if w := head("out:to_device:@mls_a:hs|D"); w.AfterPending || w.AfterResult != "$commit" {
		t.Fatalf("welcome after the commit was sent: %+v", w)
	}
	// A transient failure keeps the row at the head; a permanent one
	// lets the next go.
	m := head("out:room:!r:hs")
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		if err := OutgoingFailed(ctx, tx, p, m, "timeout", false, time.Now()); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	if m := head("out:room:!r:hs"); m.Seq != msg1 || m.Attempts != 1 {
		t.Fatalf("after a transient failure head is %d (attempts %d)", m.Seq, m.Attempts)
	}
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		if err := OutgoingFailed(ctx, tx, p, m, "M_FORBIDDEN", true, time.Time{}); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	if m := head("out:room:!r:hs"); m.Seq != msg2 {
		t.Fatalf("after a permanent failure head is %d, want %d", m.Seq, msg2)
	}
	b, err := ReadBacklog(ctx, db)
	if err != nil || b.Outgoing != 2 {
		t.Fatalf("backlog %+v (%v), want 2 outgoing (welcome, msg2)", b, err)
	}
}

func TestRetentionDeletesOnlyOldRecords(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	for i := range 5 {
		if _, _, _, err := SaveTransaction(ctx, db, fmt.Sprintf("r%d", i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `UPDATE appservice_transaction SET processed_at = now() - interval '8 days' WHERE txn_id IN ('r0','r1','r2')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE appservice_transaction SET processed_at = now() WHERE txn_id = 'r3'`); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if err := RecordEvent(ctx, db, 0, InboundEvent{Kind: "room", Type: "t", EventID: fmt.Sprintf("$%d", i), Raw: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(ctx, `UPDATE inbound_event SET recorded_at = now() - interval '8 days' WHERE event_id <> '$3'`); err != nil {
		t.Fatal(err)
	}
	deleted, err := Retention(ctx, db, time.Now().Add(-7*24*time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	if deleted["appservice_transaction"] != 3 || deleted["inbound_event"] != 3 {
		t.Fatalf("deleted %v, want 3 transactions and 3 events", deleted)
	}
	var txns, events int
	if err := db.QueryRow(ctx, `SELECT (SELECT count(*) FROM appservice_transaction), (SELECT count(*) FROM inbound_event)`).Scan(&txns, &events); err != nil {
		t.Fatal(err)
	}
	if txns != 2 || events != 1 {
		t.Fatalf("%d transactions and %d events left, want 2 (one recent, one unsplit) and 1", txns, events)
	}
}

// TestRetentionKeepsCurrentMembership: old membership events go, but each
// member's current one, which room_member names, however old; recent
// ones stay.
func TestRetentionKeepsCurrentMembership(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	for _, ev := range []MemberEvent{
		{RoomID: "!r:hs", EventID: "$invite", UserID: "@a:hs", Membership: "invite"},
		{RoomID: "!r:hs", EventID: "$join", UserID: "@a:hs", Membership: "join"},
		{RoomID: "!r:hs", EventID: "$b-join", UserID: "@b:hs", Membership: "join"},
		{RoomID: "!r:hs", EventID: "$b-leave", UserID: "@b:hs", Membership: "leave"},
		{RoomID: "!s:hs", EventID: "$s-join", UserID: "@a:hs", Membership: "join"},
	} {
		if err := SetMembership(ctx, db, ev); err != nil {
			t.Fatal(err)
		}
	}
	// All old but b's leave, which is recent: a's invite goes, a's join
	// stays (current), b's join goes though b's current event is recent.
	if _, err := db.Exec(ctx, `UPDATE room_member_event SET recorded_at = now() - interval '8 days' WHERE event_id <> '$b-leave'`); err != nil {
		t.Fatal(err)
	}
	deleted, err := Retention(ctx, db, time.Now().Add(-7*24*time.Hour), 1)
	if err != nil {
		t.Fatal(err)
	}
	if deleted["room_member_event"] != 2 {
		t.Fatalf("deleted %v, want 2 membership events", deleted)
	}
	rows, err := db.Query(ctx, `SELECT event_id FROM room_member_event ORDER BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"$b-leave", "$join", "$s-join"}; !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if m, err := Membership(ctx, db, "!r:hs", "@a:hs"); err != nil || m != "join" {
		t.Fatalf("a's membership after retention: %q (%v)", m, err)
	}
}

// TestRoomWelcomesQueueApart: a to-device message that belongs to a room
// queues per acting device and room, so that a Welcome waiting for its
// commit holds up no other room's Welcome; one without a room stays on
// the device's queue.
func TestRoomWelcomesQueueApart(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	var waiting, ready, plain int64
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		commit, _, err := p.AddOutgoing(ctx, OutgoingEvent{Kind: RoomEvent, UserID: "@mls_a:hs", DeviceID: "D",
			RoomID: "!r:hs", EventType: "m.room.encrypted", Content: []byte(`{}`)})
		if err != nil {
			return err
		}
		welcome := func(room string, after int64, fill string) (int64, error) {
			seq, _, err := p.AddOutgoing(ctx, OutgoingEvent{Kind: ToDevice, UserID: "@mls_a:hs", DeviceID: "D", RoomID: room,
				EventType: "m.room.encrypted", ToUserID: "@b:hs", ToDeviceID: "E", Content: []byte(`{}`), After: after, FillField: fill})
			return seq, err
		}
		if waiting, err = welcome("!r:hs", commit, "commit_event"); err != nil {
			return err
		}
		if ready, err = welcome("!s:hs", 0, ""); err != nil {
			return err
		}
		if plain, err = welcome("", 0, ""); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	for _, tt := range []struct {
		queue   string
		seq     int64
		pending bool
	}{
		{"out:to_device:@mls_a:hs|D|!r:hs", waiting, true},
		{"out:to_device:@mls_a:hs|D|!s:hs", ready, false},
		{"out:to_device:@mls_a:hs|D", plain, false},
	} {
		h := outboxHead(t, db, tt.queue)
		if h == nil || h.Seq != tt.seq || h.AfterPending != tt.pending || h.Queue() != tt.queue {
			t.Errorf("head of %s: %+v, want row %d (waiting %v)", tt.queue, h, tt.seq, tt.pending)
		}
	}
}

// TestHeadItemsPlannedForTheirValues: a worker's connection reads queue
// heads from the service's start, while work_item is empty, and goes on
// reading them when it holds tens of thousands of items of many queues,
// long before autovacuum analyzes it. A plan made once for the empty
// table and reused (a prepared statement's generic plan) scans the whole
// table for each read: 1.6 ms a read of 34 items in the load command's
// intake mode at 200 rooms. The reads are planned for their values each
// time, so the queue's index serves them.
func TestHeadItemsPlannedForTheirValues(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	q := conn.Conn()
	// Autovacuum analyzes the table while it is nearly empty (the
	// service's setup adds and deletes a few items at a time).
	if _, err := q.Exec(ctx, `ANALYZE work_item`); err != nil {
		t.Fatal(err)
	}
	for range 8 {
		if _, err := HeadItems(ctx, q, "in:room:!r7", 64); err != nil {
			t.Fatal(err)
		}
		if _, err := LastItemAfter(ctx, q, "in:room:!r7", 0); err != nil {
			t.Fatal(err)
		}
		if _, err := KindQueuedAfter(ctx, q, "in:room:!r7", 0, "room_event"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Exec(ctx, `INSERT INTO work_item (queue, kind, payload)
		SELECT 'in:room:!r' || (i % 200), 'room_event', '\x00' FROM generate_series(1, 20000) i`); err != nil {
		t.Fatal(err)
	}
	seqScans := func() int64 {
		t.Helper()
		var n int64
		if _, err := q.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
			t.Fatal(err)
		}
		if err := q.QueryRow(ctx, `SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'work_item'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := seqScans()
	items, err := HeadItems(ctx, q, "in:room:!r7", 64)
	if err != nil || len(items) != 64 {
		t.Fatalf("head of a queue of 100: %d items, %v", len(items), err)
	}
	if kind, err := LastItemAfter(ctx, q, "in:room:!r7", items[0].Seq); err != nil || kind != "room_event" {
		t.Fatalf("last item after the head: %q, %v", kind, err)
	}
	if found, err := KindQueuedAfter(ctx, q, "in:room:!r7", items[0].Seq, "room_event"); err != nil || !found {
		t.Fatalf("kind queued after the head: %v, %v", found, err)
	}
	if n := seqScans() - before; n != 0 {
		t.Errorf("%d sequential scans of work_item to read a queue's head", n)
	}
}

// TestMigrationStoresMembershipOnce: migration 0026 turns each room_member
// row into its event's current mark, recording an event it lacked, and
// membership reads and writes go on from there.
func TestMigrationStoresMembershipOnce(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	all := migrations.FS()
	migrateTo(t, db, 25)
	for _, q := range []string{
		`INSERT INTO room_member_event (event_id, room_id, user_id, membership) VALUES
			('$a-invite', '!r:hs', '@a:hs', 'invite'), ('$a-join', '!r:hs', '@a:hs', 'join'),
			('$b-join', '!r:hs', '@b:hs', 'join')`,
		`INSERT INTO room_member (room_id, user_id, membership, event_id) VALUES
			('!r:hs', '@a:hs', 'join', '$a-join'), ('!r:hs', '@b:hs', 'join', '$b-join'),
			('!r:hs', '@c:hs', 'invite', '$c-invite')`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Migrate(ctx, all); err != nil {
		t.Fatal(err)
	}
	current := func() map[string]string {
		t.Helper()
		rows, err := db.Query(ctx, `SELECT user_id, membership || ' ' || event_id FROM room_member WHERE room_id = '!r:hs'`)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		var u, m string
		if _, err := pgx.ForEachRow(rows, []any{&u, &m}, func() error { out[u] = m; return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := map[string]string{"@a:hs": "join $a-join", "@b:hs": "join $b-join", "@c:hs": "invite $c-invite"}
	if got := current(); !maps.Equal(got, want) {
		t.Fatalf("after migration room_member is %v, want %v", got, want)
	}
	var events int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM room_member_event`).Scan(&events); err != nil || events != 4 {
		t.Fatalf("%d membership events recorded (%v), want the 3 and c's invite", events, err)
	}
	// A new event becomes current; a repeated old one changes nothing.
	for _, ev := range []MemberEvent{
		{RoomID: "!r:hs", EventID: "$a-leave", UserID: "@a:hs", Membership: "leave"},
		{RoomID: "!r:hs", EventID: "$b-join", UserID: "@b:hs", Membership: "join"},
		{RoomID: "!r:hs", EventID: "$a-join", UserID: "@a:hs", Membership: "join"},
	} {
		if err := SetMembership(ctx, db, ev); err != nil {
			t.Fatal(err)
		}
	}
	want["@a:hs"] = "leave $a-leave"
	if got := current(); !maps.Equal(got, want) {
		t.Fatalf("after a's leave room_member is %v, want %v", got, want)
	}
}

// TestMigrationNumbersMembershipRooms: migration 0032 names each
// membership event's room by room_log's number, keeping the number of a
// room whose messages were logged and numbering the others; the
// room_member view reads as before.
func TestMigrationNumbersMembershipRooms(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	migrateTo(t, db, 31)
	var logged int64
	if err := db.QueryRow(ctx, `INSERT INTO room_log (room_id, last_no) VALUES ('!logged:hs', 7) RETURNING room_no`).Scan(&logged); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO room_member_event (event_id, room_id, user_id, membership, current) VALUES
		('$a-invite', '!logged:hs', '@a:hs', 'invite', false), ('$a-join', '!logged:hs', '@a:hs', 'join', true),
		('$b-invite', '!new:hs', '@b:hs', 'invite', true)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}
	var no, last int64
	if err := db.QueryRow(ctx, `SELECT room_no, last_no FROM room_log WHERE room_id = '!logged:hs'`).Scan(&no, &last); err != nil {
		t.Fatal(err)
	}
	if no != logged || last != 7 {
		t.Fatalf("the logged room is number %d after %d entries, want %d after 7", no, last, logged)
	}
	rows, err := db.Query(ctx, `SELECT m.event_id || ' ' || r.room_id FROM room_member_event m JOIN room_log r USING (room_no) ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	events, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if want := []string{"$a-invite !logged:hs", "$a-join !logged:hs", "$b-invite !new:hs"}; err != nil || !slices.Equal(events, want) {
		t.Fatalf("membership events after migration: %v (%v), want %v", events, err, want)
	}
	for _, c := range []struct{ room, user, want string }{
		{"!logged:hs", "@a:hs", "join"}, {"!new:hs", "@b:hs", "invite"}, {"!new:hs", "@a:hs", ""},
	} {
		if m, err := Membership(ctx, db, c.room, c.user); err != nil || m != c.want {
			t.Errorf("membership of %s in %s: %q (%v), want %q", c.user, c.room, m, err, c.want)
		}
	}
	// A room seen first by a membership event is numbered by it.
	if err := SetMembership(ctx, db, MemberEvent{RoomID: "!third:hs", EventID: "$c-join", UserID: "@c:hs", Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	if err := SetMembership(ctx, db, MemberEvent{RoomID: "!new:hs", EventID: "$b-join", UserID: "@b:hs", Membership: "join"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ room, user, want string }{{"!third:hs", "@c:hs", "join"}, {"!new:hs", "@b:hs", "join"}} {
		if m, err := Membership(ctx, db, c.room, c.user); err != nil || m != c.want {
			t.Errorf("membership of %s in %s: %q (%v), want %q", c.user, c.room, m, err, c.want)
		}
	}
}

// TestRoomNumberRace: two transactions numbering the same new room get
// the same number; the second waits for the first and reads its row.
func TestRoomNumberRace(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	first, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx)
	a, err := RoomNumber(ctx, first, "!race:hs")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		no  int64
		err error
	}
	second := make(chan result, 1)
	go func() {
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			second <- result{err: err}
			return
		}
		defer tx.Rollback(ctx)
		no, err := RoomNumber(ctx, tx, "!race:hs")
		if err == nil {
			err = tx.Commit(ctx)
		}
		second <- result{no, err}
	}()
	select {
	case r := <-second:
		t.Fatalf("the second transaction did not wait for the first: %d, %v", r.no, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-second; r.err != nil || r.no != a {
		t.Fatalf("second transaction numbered the room %d (%v), the first %d", r.no, r.err, a)
	}
	if again, err := RoomNumber(ctx, db, "!race:hs"); err != nil || again != a {
		t.Fatalf("room numbered %d (%v) afterwards, want %d", again, err, a)
	}
}
