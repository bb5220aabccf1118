package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/matrix"
)

// TestTxnIDReuseAfterSynapseRestart restarts a real Synapse (SQLite, as
// the test homeservers run) in the middle of a conversation. Synapse then
// numbers its appservice transactions from 1 again; every message sent
// after the restart must still arrive.
func TestTxnIDReuseAfterSynapseRestart(t *testing.T) {
	dsn := testenv.Database(t)
	ps := startPrivateHomeserver(t, dsn, nil)
	svc := startService(t, ps.cfgPath)
	db := openDB(t, dsn)
	cfg, err := config.Load(ps.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	puppets := matrix.NewPuppets(matrix.PuppetsConfig{HomeserverURL: cfg.Homeserver.Address, Domain: cfg.Homeserver.Domain,
		ASToken: cfg.AppService.ASToken, BotLocalpart: cfg.AppService.BotUsername, UserPrefix: cfg.AppService.UserPrefix,
		DB: db, Log: zerolog.New(zerolog.NewTestWriter(t))})
	alice := puppets.PuppetID("alice")
	if err := puppets.Register(ctx, alice); err != nil {
		t.Fatal(err)
	}
	cli, err := puppets.Client(alice, "")
	if err != nil {
		t.Fatal(err)
	}
	room, err := cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat"})
	if err != nil {
		t.Fatal(err)
	}
	var sent []id.EventID
	send := func(n int) {
		t.Helper()
		for i := range n {
			resp, err := cli.SendMessageEvent(ctx, room.RoomID, event.EventMessage,
				&event.MessageEventContent{MsgType: event.MsgText, Body: fmt.Sprintf("message %d", len(sent)+i)})
			if err != nil {
				t.Fatal(err)
			}
			sent = append(sent, resp.EventID)
			// One transaction per message, so that the counter advances.
			waitRecorded(t, db, resp.EventID)
		}
	}
	send(3)
	var before int64
	if err := db.QueryRow(ctx, `SELECT max(txn_id::bigint) FROM appservice_transaction`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	ps.hs.Restart(t)
	send(3)
	for _, e := range sent {
		waitRecorded(t, db, e)
	}
	var reused int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM (SELECT txn_id FROM appservice_transaction
		GROUP BY txn_id HAVING count(*) > 1) r`).Scan(&reused); err != nil {
		t.Fatal(err)
	}
	if reused == 0 {
		t.Fatalf("Synapse did not reuse a transaction id after its restart (ids went up to %d before): the test proves nothing", before)
	}
	t.Logf("%d transaction ids reused after the restart; all %d messages arrived", reused, len(sent))
	_ = svc
}

func waitRecorded(t *testing.T, db *database.DB, e id.EventID) {
	t.Helper()
	eventually(t, time.Minute, "event "+e.String()+" recorded", func() (bool, error) {
		var n int
		err := db.QueryRow(context.Background(), `SELECT count(*) FROM inbound_event WHERE event_id = $1`, e.String()).Scan(&n)
		return n == 1, err
	})
}
