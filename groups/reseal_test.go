package groups

import (
	"context"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/internal/reseal"
	"github.com/mls-appservice/mls-appservice/internal/testdb"
	"github.com/mls-appservice/mls-appservice/seal"
)

// TestResealRoomState: after a rotation of the master key, `keys reseal`
// over SealedColumns re-seals every sealed value of a room (the epochs'
// parts, the devices' private parts, the delivery log, a sent message's
// plaintext); each then opens under the new key alone where the package
// binds it (the bindings written in SQL are the ones the Go code seals
// to), and a service that has only the new key goes on with the room.
func TestResealRoomState(t *testing.T) {
	ctx := context.Background()
	k0, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s0, err := seal.NewSealer(k0)
	if err != nil {
		t.Fatal(err)
	}
	h := harnessOver(t, testdb.Open(t, 4), s0, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	dev := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	bob := h.newRemoteRoom("bob")
	bob.joinOurs(dev)
	goesOn(t, h, bob, alice)
	if _, err := h.sendAs(alice, bob.room, "from alice", "key-1"); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"dmls_epoch", "dmls_epoch_private", "delivery", "room_entry", "dmls_sent"} {
		if h.count(`SELECT count(*) FROM `+table) == 0 {
			t.Fatalf("nothing in %s to re-seal", table)
		}
	}

	k1, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	rotating, err := seal.NewSealer(k1, k0)
	if err != nil {
		t.Fatal(err)
	}
	n, err := reseal.Run(ctx, h.db, rotating, SealedColumns())
	if err != nil || n == 0 {
		t.Fatalf("reseal: %d values, %v", n, err)
	}
	if again, err := reseal.Run(ctx, h.db, rotating, SealedColumns()); err != nil || again != 0 {
		t.Fatalf("reseal again: %d values, %v; want none", again, err)
	}

	only, err := seal.NewSealer(k1)
	if err != nil {
		t.Fatal(err)
	}
	opened := 0
	open := func(p seal.Purpose, b seal.Binding, v []byte) {
		t.Helper()
		plain, err := only.Open(p, b, v)
		if err != nil {
			t.Fatalf("after reseal, under the new key alone: %v", err)
		}
		clear(plain)
		opened++
	}
	rows, err := h.db.Query(ctx, `SELECT room_id, epoch_id, static, init, secrets FROM dmls_epoch`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var room string
		var epoch, static, init, secrets []byte
		if err := rows.Scan(&room, &epoch, &static, &init, &secrets); err != nil {
			t.Fatal(err)
		}
		for _, p := range []struct {
			purpose seal.Purpose
			part    string
			v       []byte
		}{{purposeEpochStatic, "static", static}, {purposeEpochInit, "init", init}, {purposeEpochSecrets, "secrets", secrets}} {
			open(p.purpose, epochRow(id.RoomID(room), epochs.ID(epoch), p.part), p.v)
		}
	}
	rows, err = h.db.Query(ctx, `SELECT room_id, epoch_id, user_ids, device_ids, privates FROM dmls_epoch_private`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var room string
		var epoch []byte
		var users, devices []string
		var privates [][]byte
		if err := rows.Scan(&room, &epoch, &users, &devices, &privates); err != nil {
			t.Fatal(err)
		}
		for i, v := range privates {
			open(purposeEpochPrivate, privateRow(id.RoomID(room), epochs.ID(epoch), epochs.Device{UserID: users[i], DeviceID: devices[i]}), v)
		}
	}
	rows, err = h.db.Query(ctx, `SELECT c.user_id, d.seq, d.content FROM delivery d JOIN delivery_cursor c USING (log_no)`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var user string
		var seq int64
		var content []byte
		if err := rows.Scan(&user, &seq, &content); err != nil {
			t.Fatal(err)
		}
		open(purposeDelivery, deliveryRow(id.UserID(user), seq), content)
	}
	rows, err = h.db.Query(ctx, `SELECT r.room_id, e.no, e.content FROM room_entry e JOIN room_log r USING (room_no)`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var room string
		var no int64
		var content []byte
		if err := rows.Scan(&room, &no, &content); err != nil {
			t.Fatal(err)
		}
		open(purposeRoomEntry, roomEntryRow(id.RoomID(room), no), content)
	}
	rows, err = h.db.Query(ctx, `SELECT digest, plaintext FROM dmls_sent`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var digest, plain []byte
		if err := rows.Scan(&digest, &plain); err != nil {
			t.Fatal(err)
		}
		open(purposeSent, sentRow(digest), plain)
	}
	if opened != n {
		t.Fatalf("%d values opened under the new key, %d re-sealed", opened, n)
	}

	h2 := harnessOver(t, h.db, only, harnessOptions{})
	h2.txn.Store(h.txn.Load() + 1000)
	h2.events.Store(h.events.Load() + 1000)
	bob.h = h2
	goesOn(t, h2, bob, alice)
}
