package database

import (
	"bytes"
	"context"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/migrations"
)

// TestOutboxMediaUploadsAndSeveralDependencies follows an offloaded commit
// and an offloaded Welcome through the outbox: uploads on their own
// queue, the commit waiting for its upload, the Welcome waiting for both
// the commit (commit_event) and its own upload (ciphertext_file.url).
func TestOutboxMediaUploadsAndSeveralDependencies(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	const user, device = "@mls_a:hs", "D"
	commitBytes, welcomeBytes := bytes.Repeat([]byte{1}, 300<<10), []byte{0, 1, 2, 0xff}
	var upC, upW, commit, welcome int64
	var upCTxn string
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		var err error
		if upC, upCTxn, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: MediaUpload, UserID: user, DeviceID: device, Content: commitBytes}); err != nil {
			return err
		}
		if upW, _, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: MediaUpload, UserID: user, DeviceID: device, Content: welcomeBytes}); err != nil {
			return err
		}
		if commit, _, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: RoomEvent, UserID: user, DeviceID: device, RoomID: "!r:hs",
			EventType: "m.room.encrypted", Content: []byte(`{"ciphertext_file":{"url":""}}`),
			After: upC, FillField: "ciphertext_file.url"}); err != nil {
			return err
		}
		if welcome, _, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: ToDevice, UserID: user, DeviceID: device, EventType: "m.room.encrypted",
			ToUserID: "@b:hs", ToDeviceID: "E", Content: []byte(`{}`), After: commit, FillField: "commit_event",
			AlsoAfter: []Dependency{{Seq: upW, FillField: "ciphertext_file.url"}}}); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	head := func(queue string) *OutgoingEvent { t.Helper(); return outboxHead(t, db, queue) }
	sent := func(ev *OutgoingEvent, result string) {
		t.Helper()
		inTx(t, db, func(tx pgx.Tx) error {
			p := NewProducer(tx)
			if err := OutgoingSent(ctx, tx, p, ev, result); err != nil {
				return err
			}
			return p.Flush(ctx)
		})
	}
	const mediaQueue = "out:media:@mls_a:hs|D"
	u := head(mediaQueue)
	if u == nil || u.Seq != upC || u.Kind != MediaUpload || !bytes.Equal(u.Content, commitBytes) {
		t.Fatalf("media queue head %+v, want the commit's upload with its bytes", u)
	}
	if c := head("out:room:!r:hs"); c.Seq != commit || !c.AfterPending || c.After != upC {
		t.Fatalf("room head %+v, want the commit waiting for its upload", c)
	}
	sent(u, "mxc://hs/commitmedia")
	var left []byte
	var uri string
	if err := db.QueryRow(ctx, `SELECT content, content_uri FROM outbox WHERE seq = $1`, upC).Scan(&left, &uri); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 || uri != "mxc://hs/commitmedia" {
		t.Fatalf("uploaded row keeps %d bytes and content URI %q; want none and the URI", len(left), uri)
	}
	if got, ok, err := OutgoingByTxnID(ctx, db, upCTxn); err != nil || !ok || got != "mxc://hs/commitmedia" {
		t.Fatalf("OutgoingByTxnID of the upload: %q %v %v", got, ok, err)
	}
	c := head("out:room:!r:hs")
	if c.AfterPending || c.AfterFailed || c.AfterResult != "mxc://hs/commitmedia" || c.FillField != "ciphertext_file.url" {
		t.Fatalf("commit after its upload: %+v", c)
	}
	w := head("out:to_device:@mls_a:hs|D")
	if w.Seq != welcome || !w.AfterPending {
		t.Fatalf("welcome %+v, want it waiting", w)
	}
	sent(c, "$commit")
	if w := head("out:to_device:@mls_a:hs|D"); !w.AfterPending {
		t.Fatalf("welcome %+v is not waiting for its own upload", w)
	}
	if u := head(mediaQueue); u.Seq != upW {
		t.Fatalf("media head %d, want the Welcome's upload %d", u.Seq, upW)
	}
	sent(head(mediaQueue), "mxc://hs/welcomemedia")
	w = head("out:to_device:@mls_a:hs|D")
	want := []Dependency{{Seq: commit, FillField: "commit_event", Result: "$commit"},
		{Seq: upW, FillField: "ciphertext_file.url", Result: "mxc://hs/welcomemedia"}}
	if w.AfterPending || w.AfterFailed || !reflect.DeepEqual(w.Dependencies(), want) {
		t.Fatalf("welcome after both: pending %v failed %v dependencies %+v, want %+v", w.AfterPending, w.AfterFailed, w.Dependencies(), want)
	}
	sent(w, "")

	// Rows waiting for a row given up on are given up with it, even
	// while another row they wait for is still pending.
	var upX, msg int64
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		var err error
		if upX, _, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: MediaUpload, UserID: user, DeviceID: "F", Content: []byte("x")}); err != nil {
			return err
		}
		if msg, _, err = p.AddOutgoing(ctx, OutgoingEvent{Kind: RoomEvent, UserID: user, DeviceID: device, RoomID: "!s:hs",
			EventType: "m.room.encrypted", Content: []byte(`{}`), After: commit, AlsoAfter: []Dependency{{Seq: upX, FillField: "f"}}}); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		if err := OutgoingFailed(ctx, tx, p, head("out:media:@mls_a:hs|F"), "M_TOO_LARGE", true, time.Time{}); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	if m := head("out:room:!s:hs"); m.Seq != msg || !m.AfterFailed {
		t.Fatalf("row waiting for a failed upload: %+v", m)
	}

	// Retention deletes a row only once nothing waits for it: first the
	// Welcome, then its upload; the commit's upload and the commit stay
	// while the unsent message waits for the commit.
	if _, err := db.Exec(ctx, `UPDATE outbox SET sent_at = now() - interval '8 days' WHERE sent_at IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int64{welcome, upW, 0} {
		deleted, err := Retention(ctx, db, time.Now().Add(-7*24*time.Hour), 100)
		if err != nil {
			t.Fatal(err)
		}
		var gone bool
		if want != 0 {
			if err := db.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM outbox WHERE seq = $1)`, want).Scan(&gone); err != nil {
				t.Fatal(err)
			}
		}
		if n := deleted["outbox"]; (want != 0 && (n != 1 || !gone)) || (want == 0 && n != 0) {
			t.Fatalf("retention run %d deleted %d outbox rows (row %d gone: %v)", i+1, n, want, gone)
		}
	}
}

func TestAddOutgoingRefusesBadDependencies(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		ev   OutgoingEvent
		want string
	}{
		{"fill field without after", OutgoingEvent{RoomID: "!r", EventType: "t", FillField: "x"}, "without After"},
		{"empty member", OutgoingEvent{RoomID: "!r", EventType: "t", After: 1, FillField: "a..b"}, "empty member name"},
		{"leading dot", OutgoingEvent{RoomID: "!r", EventType: "t", After: 1, FillField: ".a"}, "empty member name"},
		{"too deep", OutgoingEvent{RoomID: "!r", EventType: "t", After: 1, FillField: strings.Repeat("a.", 16) + "a"}, "16 members"},
		{"no such row", OutgoingEvent{RoomID: "!r", EventType: "t", AlsoAfter: []Dependency{{Seq: -1}}}, "no such row"},
		{"fill into an upload", OutgoingEvent{Kind: MediaUpload, After: 1, FillField: "url"}, "not JSON"},
		{"upload into a room", OutgoingEvent{Kind: MediaUpload, RoomID: "!r"}, "outbox_shape"},
		{"missing row", OutgoingEvent{RoomID: "!r", EventType: "t", After: 1 << 40}, "outbox_dependency"},
		{"recipients of a room event", OutgoingEvent{RoomID: "!r", EventType: "t", AlsoTo: map[string][]string{"@b:hs": {"E"}}},
			"not a to-device message"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := db.InTx(ctx, func(tx pgx.Tx) error {
				tt.ev.UserID = "@mls_a:hs"
				tt.ev.Content = []byte(`{}`)
				_, _, err := NewProducer(tx).AddOutgoing(ctx, tt.ev)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestMigrationKeepsDependencies migrates an outbox written under schema
// 4 (one after_seq and fill_field per row) and finds its dependency in
// the new table.
func TestMigrationKeepsDependencies(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	all := migrations.FS()
	migrateTo(t, db, 4)
	var commit int64
	if err := db.QueryRow(ctx, `INSERT INTO outbox (txn_id, kind, queue, user_id, room_id, event_type, content)
		VALUES ('c', 'room_event', 'out:room:!r', '@a:hs', '!r', 't', '{}') RETURNING seq`).Scan(&commit); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO outbox (txn_id, kind, queue, user_id, device_id, event_type, to_user_id, to_device_id,
		content, after_seq, fill_field) VALUES ('w', 'to_device', 'out:to_device:@a:hs|D', '@a:hs', 'D', 't', '@b:hs', 'E', '{}', $1, 'commit_event')`,
		commit); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Migrate(ctx, all); err != nil {
		t.Fatal(err)
	}
	w, err := HeadOutgoing(ctx, db, "out:to_device:@a:hs|D")
	if err != nil {
		t.Fatal(err)
	}
	if w.After != commit || w.FillField != "commit_event" || !w.AfterPending {
		t.Fatalf("after migration the Welcome is %+v, want it waiting for %d into commit_event", w, commit)
	}
}

// migrateTo applies the service's migrations up to version.
func migrateTo(t *testing.T, db *DB, version int) {
	t.Helper()
	all, upTo := migrations.FS(), fstest.MapFS{}
	for _, m := range mustLoad(t, all) {
		if m.Version > version {
			break
		}
		data, err := fs.ReadFile(all, m.Name)
		if err != nil {
			t.Fatal(err)
		}
		upTo[m.Name] = &fstest.MapFile{Data: data}
	}
	if v, err := db.Migrate(context.Background(), upTo); err != nil || v != version {
		t.Fatalf("migrate to %d: %v %v", version, v, err)
	}
}

// outboxHead is HeadOutgoing for tests.
func outboxHead(t *testing.T, db *DB, queue string) *OutgoingEvent {
	t.Helper()
	ev, err := HeadOutgoing(context.Background(), db, queue)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func mustLoad(t *testing.T, fsys fs.FS) []Migration {
	t.Helper()
	ms, err := LoadMigrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// TestDependencySentWhileItsDependentLooks: a worker looks at a row waiting
// for an upload while another worker marks the upload sent. Whatever the
// order in which the two commit, the waiting row's queue ends up due now:
// the dependent's worker must not see the upload pending, then commit its
// 30-second safety-net wait over the wake the upload's worker committed in
// between (seen as a 32 s join in TestOffload).
func TestDependencySentWhileItsDependentLooks(t *testing.T) {
	db := migrated(t)
	ctx := context.Background()
	const user, device, roomQueue = "@mls_a:hs", "D", "out:room:!r:hs"
	inTx(t, db, func(tx pgx.Tx) error {
		p := NewProducer(tx)
		up, _, err := p.AddOutgoing(ctx, OutgoingEvent{Kind: MediaUpload, UserID: user, DeviceID: device, Content: []byte("c")})
		if err != nil {
			return err
		}
		if _, _, err := p.AddOutgoing(ctx, OutgoingEvent{Kind: RoomEvent, UserID: user, DeviceID: device, RoomID: "!r:hs",
			EventType: "m.room.encrypted", Content: []byte(`{"ciphertext_file":{"url":""}}`),
			After: up, FillField: "ciphertext_file.url"}); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	upload := outboxHead(t, db, "out:media:@mls_a:hs|D")

	// The upload's worker has marked it sent and woken its dependents but
	// not yet committed.
	uploader, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer uploader.Rollback(ctx)
	up := NewProducer(uploader)
	if err := OutgoingSent(ctx, uploader, up, upload, "mxc://hs/c"); err != nil {
		t.Fatal(err)
	}
	if err := up.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// The dependent's worker looks at its head meanwhile, as the sender
	// does: a row still waiting puts its queue off by the safety net.
	looked, resume := make(chan bool, 1), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.InTx(ctx, func(tx pgx.Tx) error {
			ev, err := HeadOutgoing(ctx, tx, roomQueue)
			if err != nil {
				return err
			}
			looked <- ev.AfterPending
			<-resume
			p := NewProducer(tx)
			if ev.AfterPending {
				p.Touch(roomQueue, Outbound, time.Now().Add(30*time.Second))
			}
			return p.Flush(ctx)
		})
	}()
	// The look either ends at once or waits for the upload's worker.
	select {
	case <-looked:
	case <-time.After(300 * time.Millisecond):
	}
	if err := uploader.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var wait float64
	if err := db.QueryRow(ctx, `SELECT extract(epoch FROM due_at - now()) FROM work_queue WHERE queue = $1`,
		roomQueue).Scan(&wait); err != nil {
		t.Fatal(err)
	}
	if wait > 1 {
		t.Fatalf("the room queue is due in %.0f s after its upload was sent, want now", wait)
	}
	if ev := outboxHead(t, db, roomQueue); ev.AfterPending || ev.AfterResult != "mxc://hs/c" {
		t.Fatalf("the room queue's head %+v, want its upload's URI", ev)
	}
}
