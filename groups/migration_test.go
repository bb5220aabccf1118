package groups

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/internal/testdb"
	"github.com/mls-appservice/mls-appservice/migrations"
)

// TestMigrationGathersPrivates: migration 0017 moves the private parts
// stored a row each into one row per epoch, and each still opens where
// it is bound (its room, epoch and device), read as loadEpoch reads it.
func TestMigrationGathersPrivates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := testdb.OpenBefore(ctx, t, "0017")
	sealer := newSealer(t)

	room := id.RoomID("!migrate:example.org")
	e1, e2 := epochs.ID(bytes.Repeat([]byte{1}, 32)), epochs.ID(bytes.Repeat([]byte{2}, 32))
	want := map[epochs.ID]map[epochs.Device][]byte{
		e1: {
			{UserID: "@b:example.org", DeviceID: "B1"}: []byte("private of b1 in e1"),
			{UserID: "@a:example.org", DeviceID: "A2"}: []byte("private of a2 in e1"),
			{UserID: "@a:example.org", DeviceID: "A1"}: []byte("private of a1 in e1"),
		},
		e2: {{UserID: "@a:example.org", DeviceID: "A1"}: []byte("private of a1 in e2")},
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO dmls_room (room_id, suite, algorithm) VALUES ($1, 1, 'test')`, room); err != nil {
		t.Fatal(err)
	}
	for e, parts := range want {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO dmls_epoch (room_id, epoch_id, static, init, secrets) VALUES ($1, $2, '', '', '')`,
			room, []byte(e)); err != nil {
			t.Fatal(err)
		}
		for d, plain := range parts {
			sealed, err := sealer.Seal(purposeEpochPrivate, privateRow(room, e, d), plain)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Pool.Exec(ctx, `INSERT INTO dmls_epoch_device (room_id, epoch_id, user_id, device_id, private)
				VALUES ($1, $2, $3, $4, $5)`, room, []byte(e), d.UserID, d.DeviceID, sealed); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}

	var gone bool
	if err := db.Pool.QueryRow(ctx, `SELECT to_regclass('dmls_epoch_device') IS NULL`).Scan(&gone); err != nil || !gone {
		t.Errorf("dmls_epoch_device still exists (%v)", err)
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM dmls_epoch_private`).Scan(&rows); err != nil || rows != 2 {
		t.Errorf("%d rows in dmls_epoch_private (%v), want one per epoch: 2", rows, err)
	}
	s := &Service{cfg: Config{Sealer: sealer}}
	for e, parts := range want {
		var users, devices []string
		var sealed [][]byte
		if err := db.Pool.QueryRow(ctx, `SELECT user_ids, device_ids, privates FROM dmls_epoch_private WHERE room_id = $1 AND epoch_id = $2`,
			room, []byte(e)).Scan(&users, &devices, &sealed); err != nil {
			t.Fatalf("epoch %v: %v", e, err)
		}
		got, err := privateParts(room, e, users, devices, sealed)
		if err != nil {
			t.Fatalf("epoch %v: %v", e, err)
		}
		for d, b := range got {
			if got[d], err = s.openPrivate(room, e, d, b); err != nil {
				t.Fatalf("epoch %v: %v", e, err)
			}
		}
		if len(got) != len(parts) {
			t.Errorf("epoch %v: %d private parts, want %d", e, len(got), len(parts))
		}
		for d, plain := range parts {
			if !bytes.Equal(got[d], plain) {
				t.Errorf("epoch %v, %v: private part %q, want %q", e, d, got[d], plain)
			}
		}
	}
}

// TestMigrationNumbersLogs: migration 0018 keys each puppet's log by its
// cursor's number; every entry keeps its seq, room and content (sealed
// to the user ID and seq, so it still opens), and the next delivery
// continues the log.
func TestMigrationNumbersLogs(t *testing.T) {
	ctx, db, s := logsBefore(t, "0018")
	alice, bob := id.UserID("@alice:example.org"), id.UserID("@bob:example.org")
	logs := map[id.UserID][]string{alice: {"a1", "a2", "a3"}, bob: {"b1"}}
	for user, bodies := range logs {
		for i, body := range bodies {
			seq := int64(i + 1)
			sealed, err := s.cfg.Sealer.Seal(purposeDelivery, deliveryRow(user, seq), []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Pool.Exec(ctx, `INSERT INTO delivery (user_id, seq, room_id, event_id, kind, sender, event_type, content)
				VALUES ($1, $2, '!r:example.org', $3, 'message', '@x:example.org', 'm.room.message', $4)`,
				user, seq, "$"+body, sealed); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO delivery_cursor (user_id, last_seq) VALUES ($1, $2)`, user, len(bodies)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}

	for user, bodies := range logs {
		got, err := s.Log(ctx, user, 0, 10)
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		if len(got) != len(bodies) {
			t.Fatalf("%s: %d entries, want %d", user, len(got), len(bodies))
		}
		for i, d := range got {
			if d.Seq != int64(i+1) || string(d.Content) != bodies[i] || d.Puppet != user || d.RoomID != "!r:example.org" {
				t.Errorf("%s: entry %d is %d %q %s %s, want %d %q", user, i, d.Seq, d.Content, d.Puppet, d.RoomID, i+1, bodies[i])
			}
		}
	}
	var numbers int
	if err := db.Pool.QueryRow(ctx, `SELECT count(DISTINCT log_no) FROM delivery_cursor`).Scan(&numbers); err != nil || numbers != 2 {
		t.Errorf("%d log numbers (%v), want one per puppet: 2", numbers, err)
	}
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := s.deliver(ctx, &inbound.Work{Q: tx}, []id.UserID{alice, "@carol:example.org"}, Delivered{RoomID: "!r:example.org",
			EventID: "$a4", Kind: KindMessage, Sender: "@x:example.org", Type: "m.room.message", Content: []byte("a4")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Log(ctx, alice, 3, 10); err != nil || len(got) != 1 || got[0].Seq != 4 || string(got[0].Content) != "a4" {
		t.Errorf("alice after 3: %+v, %v; want the entry 4 a4", got, err)
	}
	if got, err := s.Log(ctx, "@carol:example.org", 0, 10); err != nil || len(got) != 1 || got[0].Seq != 1 {
		t.Errorf("carol: %+v, %v; want the entry 1", got, err)
	}
}

// TestMigrationKeysSpansByFirst: migration 0030 keys each span by its
// first number; a log written before it reads back the same, entry for
// entry, and the next delivery grows the log's last span.
func TestMigrationKeysSpansByFirst(t *testing.T) {
	ctx, db, s := logsBefore(t, "0030")
	alice, room := id.UserID("@alice:example.org"), id.RoomID("!r:example.org")
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO room_log (room_id, last_no) VALUES ($1, 5)`, room)
	for no := int64(1); no <= 5; no++ {
		sealed, err := s.cfg.Sealer.Seal(purposeRoomEntry, roomEntryRow(room, no), fmt.Appendf(nil, "m%d", no))
		if err != nil {
			t.Fatal(err)
		}
		exec(`INSERT INTO room_entry (room_no, no, event_id, sender, event_type, content)
			SELECT room_no, $2, $3, '@x:example.org', 'm.room.message', $4 FROM room_log WHERE room_id = $1`,
			room, no, fmt.Sprintf("$m%d", no), sealed)
	}
	// alice's log: entries 1-2 of the room, a row of her own (3), entries
	// 3-5 of the room.
	exec(`INSERT INTO delivery_cursor (user_id, last_seq) VALUES ($1, 6)`, alice)
	exec(`INSERT INTO delivery (log_no, seq, room_id, event_id, kind, sender, event_type, content)
		SELECT log_no, 3, $2, '$state', 'mls_state', '@x:example.org', 'org.mls-appservice.mls_state', $3
		FROM delivery_cursor WHERE user_id = $1`, alice, room, mustSeal(t, s, alice, 3, "state"))
	exec(`INSERT INTO delivery_span (log_no, last_seq, n, room_no, first_no)
		SELECT c.log_no, x.last, x.n, r.room_no, x.first FROM delivery_cursor c, room_log r,
		(VALUES (2, 2, 1), (6, 3, 3)) AS x (last, n, first) WHERE c.user_id = $1`, alice)
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}

	want := "1:$m1 2:$m2 3:$state 4:$m3 5:$m4 6:$m5"
	read := func(after int64) string {
		t.Helper()
		got, err := s.Log(ctx, alice, after, 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range got {
			out = append(out, fmt.Sprintf("%d:%s", d.Seq, d.EventID))
		}
		return strings.Join(out, " ")
	}
	if got := read(0); got != want {
		t.Errorf("log %s, want %s", got, want)
	}
	if got := read(4); got != "5:$m4 6:$m5" {
		t.Errorf("log after 4: %s, want 5:$m4 6:$m5", got)
	}
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := s.deliver(ctx, &inbound.Work{Q: tx}, []id.UserID{alice}, Delivered{RoomID: room,
			EventID: "$m6", Kind: KindMessage, Sender: "@x:example.org", Type: "m.room.message", Content: []byte("m6")})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(0); got != want+" 7:$m6" {
		t.Errorf("log after a delivery %s, want %s 7:$m6", got, want)
	}
	var spans string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(first_seq || '+' || n, ' ' ORDER BY first_seq) FROM delivery_span`).Scan(&spans); err != nil || spans != "1+2 4+4" {
		t.Errorf("spans %q (%v), want 1+2 4+4: the last one grown", spans, err)
	}
}

// logsBefore opens a database migrated up to the migration first, and a
// Service on it that can deliver and read logs, for the test's minute.
func logsBefore(t *testing.T, first string) (context.Context, *database.DB, *Service) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	db := testdb.OpenBefore(ctx, t, first)
	return ctx, db, &Service{cfg: Config{Sealer: newSealer(t), DB: db}, metrics: NewMetrics(prometheus.NewRegistry())}
}

// mustSeal seals body as entry seq of puppet's own rows.
func mustSeal(t *testing.T, s *Service, puppet id.UserID, seq int64, body string) []byte {
	t.Helper()
	sealed, err := s.cfg.Sealer.Seal(purposeDelivery, deliveryRow(puppet, seq), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return sealed
}
