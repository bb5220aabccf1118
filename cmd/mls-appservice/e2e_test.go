package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/matrix"
)

const dmlsKeyPackageAlgorithm = "org.matrix.msc2883.v1.dmls.key_package.1"

// TestEndToEndOnSynapse runs the service against the real Synapse that
// ./scripts/test started, with the registration -g generated.
func TestEndToEndOnSynapse(t *testing.T) {
	syn := testenv.RequireSynapse(t)
	dsn := testenv.Database(t)
	cfgPath := writeConfig(t, syn.ConfigPath, dsn, 0)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	svc := startService(t, cfgPath)
	db := openDB(t, dsn)

	// The test drives puppets with the same code the service uses,
	// against the same database.
	puppets := matrix.NewPuppets(matrix.PuppetsConfig{HomeserverURL: cfg.Homeserver.Address,
		Domain: cfg.Homeserver.Domain, ASToken: cfg.AppService.ASToken, BotLocalpart: cfg.AppService.BotUsername,
		UserPrefix: cfg.AppService.UserPrefix, DB: db, Log: zerolog.New(zerolog.NewTestWriter(t))})

	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	alice := puppets.PuppetID("alice_" + hex.EncodeToString(suffix[:]))
	bob := puppets.PuppetID("bob_" + hex.EncodeToString(suffix[:]))
	const aliceDevice = id.DeviceID("ALICEMLS1")
	for _, u := range []id.UserID{alice, bob} {
		if err := puppets.Register(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if err := puppets.Register(ctx, alice); err != nil {
		t.Fatalf("registering an existing puppet again: %v", err)
	}
	// MSC4190: 201 the first time, 200 when the device exists.
	for range 2 {
		if err := puppets.CreateDevice(ctx, alice, aliceDevice, "alice's MLS device"); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := database.IsPuppet(ctx, db, alice.String()); err != nil || !ok {
		t.Fatalf("alice not remembered as a puppet (%v)", err)
	}
	if devs, err := database.PuppetDevices(ctx, db, alice.String()); err != nil || !slices.Equal(devs, []string{string(aliceDevice)}) {
		t.Fatalf("alice's devices in the database: %v (%v)", devs, err)
	}

	aliceCli, err := puppets.Client(alice, aliceDevice)
	if err != nil {
		t.Fatal(err)
	}
	who, err := aliceCli.Whoami(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if who.UserID != alice || who.DeviceID != aliceDevice {
		t.Fatalf("masquerading as %s/%s, homeserver says %s/%s", alice, aliceDevice, who.UserID, who.DeviceID)
	}
	bobCli, err := puppets.Client(bob, "")
	if err != nil {
		t.Fatal(err)
	}

	room, err := aliceCli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bobCli.JoinRoomByID(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	sent, err := aliceCli.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
		&event.MessageEventContent{MsgType: event.MsgText, Body: "hello from alice"})
	if err != nil {
		t.Fatal(err)
	}

	// A room member can send an event whose type holds a NUL (the
	// homeserver accepts it); it must be skipped with a recorded problem,
	// and the room's next event still applied.
	var poison struct {
		EventID string `json:"event_id"`
	}
	_, err = bobCli.MakeRequest(ctx, http.MethodPut, bobCli.BuildClientURL("v3", "rooms", room.RoomID, "send", "m.x\x00y", "poison1"),
		map[string]any{"body": "poison"}, &poison)
	if err != nil {
		t.Fatalf("Synapse refused the NUL event type (the test assumes it accepts it): %v", err)
	}
	after, err := bobCli.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
		&event.MessageEventContent{MsgType: event.MsgText, Body: "after the poison"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the event after a NUL-typed one applied, the NUL-typed one skipped with a problem", func() (bool, error) {
		var applied, poisoned, problems int
		err := db.Pool.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM inbound_event WHERE event_id = $1),
			(SELECT count(*) FROM inbound_event WHERE event_id = $2),
			(SELECT count(*) FROM appservice_transaction WHERE last_error LIKE '%contains a NUL%')`,
			after.EventID.String(), poison.EventID).Scan(&applied, &poisoned, &problems)
		if poisoned != 0 {
			return false, fmt.Errorf("the NUL-typed event %s was recorded", poison.EventID)
		}
		return applied == 1 && problems >= 1, err
	})

	eventually(t, 60*time.Second, "membership and message through transactions", func() (bool, error) {
		for _, u := range []id.UserID{alice, bob} {
			m, err := database.Membership(ctx, db, room.RoomID.String(), u.String())
			if err != nil || m != "join" {
				return false, err
			}
		}
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM inbound_event WHERE kind = 'room' AND event_id = $1`,
			sent.EventID.String()).Scan(&n)
		return n == 1, err
	})

	// The outbox: the service sends a queued event as alice's device with
	// its stable transaction id, and the event comes back to us through a
	// transaction. Sending the same row again, as after a crash between
	// the send and MarkSent, yields the same event.
	var txnID string
	err = db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		txnID, err = database.EnqueueEvent(ctx, tx, database.OutgoingEvent{UserID: alice.String(),
			DeviceID: aliceDevice.String(), RoomID: room.RoomID.String(), EventType: "m.room.message",
			Content: []byte(`{"msgtype": "m.text", "body": "from the outbox"}`)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var outboxEventID string
	eventually(t, 60*time.Second, "outbox event sent and received back", func() (bool, error) {
		var sentID *string
		if err := db.Pool.QueryRow(ctx, `SELECT event_id FROM outbox WHERE txn_id = $1`, txnID).Scan(&sentID); err != nil || sentID == nil {
			return false, err
		}
		outboxEventID = *sentID
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM inbound_event WHERE event_id = $1 AND sender = $2`,
			outboxEventID, alice.String()).Scan(&n)
		return n == 1, err
	})
	sender := matrix.NewSender(matrix.SenderConfig{DB: db, Puppets: puppets, Metrics: matrix.NewMetrics(prometheus.NewRegistry()),
		Log: zerolog.New(zerolog.NewTestWriter(t))})
	again, err := sender.Send(ctx, &database.OutgoingEvent{Kind: database.RoomEvent, TxnID: txnID, UserID: alice.String(), DeviceID: aliceDevice.String(),
		RoomID: room.RoomID.String(), EventType: "m.room.message", Content: []byte(`{"msgtype": "m.text", "body": "from the outbox"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if again != outboxEventID {
		t.Fatalf("re-sending outbox transaction %s made event %s, first send made %s", txnID, again, outboxEventID)
	}

	// One-time keys: a classic one and our KeyPackage algorithm, which
	// mautrix's OTKCount would drop.
	var uploaded struct {
		Counts map[string]int `json:"one_time_key_counts"`
	}
	// Synapse requires a signatures object but does not verify it.
	signatures := map[string]any{alice.String(): map[string]any{"ed25519:" + aliceDevice.String(): "c2lnbmF0dXJl"}}
	_, err = aliceCli.MakeRequest(ctx, http.MethodPost, aliceCli.BuildClientURL("v3", "keys", "upload"), map[string]any{
		"one_time_keys": map[string]any{
			"signed_curve25519:AAAAAQ":       map[string]any{"key": "dGVzdGtleTE", "signatures": signatures},
			"signed_curve25519:AAAAAg":       map[string]any{"key": "dGVzdGtleTI", "signatures": signatures},
			dmlsKeyPackageAlgorithm + ":kp1": "a2V5cGFja2FnZTE",
			dmlsKeyPackageAlgorithm + ":kp2": "a2V5cGFja2FnZTI",
			dmlsKeyPackageAlgorithm + ":kp3": "a2V5cGFja2FnZTM",
		},
	}, &uploaded)
	if err != nil {
		t.Fatal(err)
	}
	if uploaded.Counts["signed_curve25519"] != 2 || uploaded.Counts[dmlsKeyPackageAlgorithm] != 3 {
		t.Fatalf("upload response counts %v", uploaded.Counts)
	}

	// A to-device message for alice's device; Synapse sends it with
	// alice's key counts, since alice is then an "interesting" user.
	_, err = bobCli.SendToDevice(ctx, event.Type{Type: "org.example.e2e", Class: event.ToDeviceEventType},
		&mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
			alice: {aliceDevice: {Raw: map[string]any{"hello": "device"}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "to-device message through a transaction (MSC2409)", func() (bool, error) {
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM inbound_event WHERE kind = 'to_device'
			AND to_user_id = $1 AND to_device_id = $2 AND sender = $3 AND event_type = 'org.example.e2e'`,
			alice.String(), aliceDevice.String(), bob.String()).Scan(&n)
		return n == 1, err
	})
	eventually(t, 60*time.Second, "one-time key counts through a transaction (MSC3202)", func() (bool, error) {
		counts, err := database.KeyCounts(ctx, db, alice.String(), aliceDevice.String())
		return counts["signed_curve25519"] == 2 && counts[dmlsKeyPackageAlgorithm] == 3, err
	})

	live, err := http.Get(svc.base + "/_matrix/mau/live")
	if err != nil {
		t.Fatal(err)
	}
	live.Body.Close()
	if live.StatusCode != http.StatusOK {
		t.Errorf("/_matrix/mau/live answered %d", live.StatusCode)
	}
	resp, err := http.Get(svc.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"mlsas_transactions_received_total", "mlsas_transactions_split_total",
		"mlsas_work_items_processed_total", "mlsas_work_item_seconds_bucket", `mlsas_outbox_sent_total{kind="room_event"} 1`, "mlsas_queue_oldest_age_seconds"} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
