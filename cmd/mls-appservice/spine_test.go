package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
)

// spineProcessing makes failing items slow to park, so the test can tell
// a room that waits for its poisoned item (1+2+4 s before parking) from
// rooms that do not wait at all.
var spineProcessing = map[string]any{"workers": 2, "batch_size": 8, "max_attempts": 4,
	"retry_backoff": "1s", "max_retry_backoff": "4s", "poll": "100ms"}

// spineElement is one element of a transaction the test sends.
type spineElement struct {
	key  string // events, to_device, ...
	json string
}

// TestSpine sends transactions holding good events of many rooms, events
// that the database refuses when their handler records them (a trigger
// the test installs: a failing handler), and every kind of malformed
// value, to two instances of the real binary over one database; one
// instance is killed with SIGKILL half way and restarted. Every good item
// must be applied exactly once and in its room's order, every malformed
// element skipped, every failing item parked, and no room but a poisoned
// item's own must wait.
func TestSpine(t *testing.T) {
	syn := testenv.RequireSynapse(t)
	dsn := testenv.Database(t)
	ctx := context.Background()
	cfgA := writeConfigWith(t, syn.ConfigPath, dsn, freePort(t), map[string]map[string]any{"processing": spineProcessing})
	cfgB := writeConfigWith(t, syn.ConfigPath, dsn, freePort(t), map[string]map[string]any{"processing": spineProcessing})
	cfg, err := config.Load(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	a := startService(t, cfgA)
	db := openDB(t, dsn)
	// A handler that fails on some events, for as long as the trigger
	// exists: the recorder's insert is refused.
	if _, err := db.Exec(ctx, `CREATE FUNCTION spine_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.event_id LIKE '$poisoned%' THEN
				RAISE EXCEPTION 'handler refuses %', NEW.event_id;
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER spine_poison BEFORE INSERT ON inbound_event FOR EACH ROW EXECUTE FUNCTION spine_poison();`); err != nil {
		t.Fatal(err)
	}
	b := startService(t, cfgB)

	const rooms, txns = 16, 48
	rng := rand.New(rand.NewPCG(9, 9))
	next := make([]int, rooms)      // next event number per room
	want := make([][]string, rooms) // good events per room, in order
	var poisonedItems []string      // events whose handler fails
	toDevice := 0                   // good to-device events sent
	poison := 0                     // bad elements sent
	var bodies [][]byte             // one per transaction
	parsePoison := spinePoison()
	for n := range txns {
		var els []spineElement
		for range 3 + rng.IntN(10) {
			r := rng.IntN(rooms)
			i := next[r]
			next[r]++
			room := fmt.Sprintf("!spine%d:localhost", r)
			switch {
			case r < 2 && i%9 == 4:
				id := fmt.Sprintf("$poisoned-%d-%d", r, i)
				poisonedItems = append(poisonedItems, id)
				els = append(els, spineElement{"events", roomEventJSON(room, id, "m.room.message", `{"i": 1}`)})
			case i%5 == 3:
				id := fmt.Sprintf("$s%d-%d", r, i)
				want[r] = append(want[r], id)
				els = append(els, spineElement{"events", fmt.Sprintf(`{"type": "m.room.member", "room_id": %q, "event_id": %q,
					"sender": "@u%d:localhost", "state_key": "@u%d:localhost", "content": {"membership": "join"}}`, room, id, i, i)})
			default:
				id := fmt.Sprintf("$s%d-%d", r, i)
				want[r] = append(want[r], id)
				els = append(els, spineElement{"events", roomEventJSON(room, id, "m.room.message", fmt.Sprintf(`{"i": %d}`, i))})
			}
			if rng.IntN(3) == 0 {
				p := parsePoison[poison%len(parsePoison)]
				poison++
				els = append(els, p)
			}
		}
		if n%4 == 0 {
			toDevice++
			els = append(els, spineElement{"de.sorunome.msc2409.to_device", fmt.Sprintf(`{"type": "org.example.spine",
				"sender": "@b:localhost", "to_user_id": "@mls_spine:localhost", "to_device_id": "D%d", "content": {"n": %d}}`, n%3, n)})
		}
		bodies = append(bodies, transactionJSON(els))
	}
	// Every parse-poison kind at least once.
	for poison < len(parsePoison) {
		bodies = append(bodies, transactionJSON([]spineElement{parsePoison[poison]}))
		poison++
	}
	poison += len(poisonedItems)

	// Half the transactions to each instance; A is killed half way
	// through, and what it did not acknowledge goes to B, as the
	// homeserver retries elsewhere-or-later.
	var sentTo []string
	for n, body := range bodies {
		target := b
		if n%2 == 0 && a != nil {
			target = a
		}
		txnID := fmt.Sprintf("spine-%d", n)
		if !putRaw(target.base, cfg.AppService.HSToken, txnID, body) {
			if !putRaw(b.base, cfg.AppService.HSToken, txnID, body) {
				t.Fatalf("neither instance took transaction %s", txnID)
			}
		}
		sentTo = append(sentTo, target.base)
		if n == len(bodies)/2 {
			a.kill(t)
			a = nil
		}
		if n == 3*len(bodies)/4 {
			a = startService(t, cfgA)
		}
	}
	// The homeserver retrying an acknowledged transaction: a no-op.
	if !putRaw(b.base, cfg.AppService.HSToken, "spine-1", bodies[1]) {
		t.Fatal("repeat refused")
	}

	eventually(t, 2*time.Minute, "every transaction split and every item applied or parked", func() (bool, error) {
		bl, err := database.ReadBacklog(ctx, db)
		return bl.Transactions == 0 && bl.Items == 0, err
	})

	// What was applied, per room, in commit order.
	rows, err := db.Query(ctx, `SELECT e.room_id, e.event_id, e.recorded_at - t.received_at
		FROM inbound_event e JOIN appservice_transaction t ON t.seq = e.txn_seq WHERE e.kind = 'room' ORDER BY e.seq`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	var maxDelay time.Duration
	var room, ev string
	var delay time.Duration
	if _, err := pgx.ForEachRow(rows, []any{&room, &ev, &delay}, func() error {
		got[room] = append(got[room], ev)
		if !strings.HasPrefix(room, "!spine0:") && !strings.HasPrefix(room, "!spine1:") {
			maxDelay = max(maxDelay, delay)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	items := len(poisonedItems) + toDevice
	processed, lost, duplicated, outOfOrder := 0, 0, 0, 0
	for r := range rooms {
		room := fmt.Sprintf("!spine%d:localhost", r)
		items += len(want[r])
		seen := map[string]int{}
		var order []string
		for _, e := range got[room] {
			seen[e]++
			if seen[e] == 1 {
				order = append(order, e)
			} else {
				duplicated++
			}
		}
		for _, e := range want[r] {
			if seen[e] == 0 {
				lost++
			} else {
				processed++
			}
		}
		if strings.Join(order, ",") != strings.Join(want[r], ",") {
			outOfOrder++
			t.Errorf("%s applied %v, want %v", room, order, want[r])
		}
	}
	var toDeviceRows, toDeviceDistinct int
	if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT raw) FROM inbound_event WHERE kind = 'to_device'`).
		Scan(&toDeviceRows, &toDeviceDistinct); err != nil {
		t.Fatal(err)
	}
	processed += toDeviceDistinct
	lost += toDevice - toDeviceDistinct
	duplicated += toDeviceRows - toDeviceDistinct
	parked, err := database.ParkedItems(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("spine: instances=2 rooms=%d items=%d poison=%d parked=%d processed=%d lost=%d duplicated=%d out_of_order=%d\n",
		rooms, items, poison, len(parked), processed, lost, duplicated, outOfOrder)

	if lost != 0 || duplicated != 0 || outOfOrder != 0 || processed+len(parked) != items {
		t.Errorf("lost %d, duplicated %d, out of order %d; processed %d + parked %d != items %d",
			lost, duplicated, outOfOrder, processed, len(parked), items)
	}
	if len(parked) != len(poisonedItems) {
		t.Errorf("%d items parked, want the %d poisoned ones", len(parked), len(poisonedItems))
	}
	for _, p := range parked {
		if !strings.HasPrefix(p.EventID, "$poisoned-") || p.Attempts != 4 || !strings.Contains(p.LastError, "handler refuses") {
			t.Errorf("parked item %+v is not a poisoned one after 4 attempts", p)
		}
	}
	// A room behind a poisoned item waits 7 s before the item is parked;
	// the other rooms must not wait for it.
	if maxDelay > 3500*time.Millisecond {
		t.Errorf("an unpoisoned room waited %s for its events: it was held back", maxDelay)
	}
	var txnRows, problems int
	if err := db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE last_error LIKE 'skipped %') FROM appservice_transaction`).
		Scan(&txnRows, &problems); err != nil {
		t.Fatal(err)
	}
	if txnRows != len(bodies) {
		t.Errorf("%d transactions stored, want %d (a repeat must not be stored twice)", txnRows, len(bodies))
	}
	var badCounts int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM device_key_count WHERE algorithm LIKE 'spine.%'`).Scan(&badCounts); err != nil || badCounts != 0 {
		t.Errorf("%d out-of-range key counts stored (%v)", badCounts, err)
	}

	// The operator's view: list, then retry one after fixing the cause,
	// and drop another.
	out := runCommand(t, cfgA, "queue", "list")
	for _, id := range poisonedItems {
		if !strings.Contains(out, id) {
			t.Errorf("queue list lacks %s:\n%s", id, out)
		}
	}
	if _, err := db.Exec(ctx, `DROP TRIGGER spine_poison ON inbound_event`); err != nil {
		t.Fatal(err)
	}
	out = runCommand(t, cfgA, "queue", "retry", fmt.Sprint(parked[0].Seq))
	if !strings.Contains(out, "put back on") {
		t.Errorf("queue retry said %q", out)
	}
	runCommand(t, cfgA, "queue", "drop", fmt.Sprint(parked[1].Seq))
	eventually(t, time.Minute, "the retried item applied", func() (bool, error) {
		var n int
		err := db.QueryRow(ctx, `SELECT count(*) FROM inbound_event WHERE event_id = $1`, parked[0].EventID).Scan(&n)
		return n == 1, err
	})
	if after, err := database.ParkedItems(ctx, db); err != nil || len(after) != len(parked)-2 {
		t.Errorf("%d parked after retry and drop (%v), want %d", len(after), err, len(parked)-2)
	}
	if msg := runCommandFails(t, cfgA, "queue", "retry", "999999"); !strings.Contains(msg, "not parked") {
		t.Errorf("retrying an unknown item said %q", msg)
	}
}

func roomEventJSON(room, id, typ, content string) string {
	return fmt.Sprintf(`{"type": %q, "room_id": %q, "event_id": %q, "sender": "@a:localhost", "content": %s}`, typ, room, id, content)
}

// spinePoison returns malformed elements: NUL and invalid UTF-8 in every
// string field, wrong JSON types, numbers out of their column's range.
func spinePoison() []spineElement {
	ev := func(typ, room, id, sender string) string {
		return fmt.Sprintf(`{"type": "%s", "room_id": "%s", "event_id": "%s", "sender": "%s", "content": {}}`, typ, room, id, sender)
	}
	const room, sender = "!spine2:localhost", "@a:localhost"
	member := func(stateKey, membership string) string {
		return fmt.Sprintf(`{"type": "m.room.member", "room_id": "%s", "event_id": "$bad-member", "sender": "%s",
			"state_key": "%s", "content": {"membership": "%s"}}`, room, sender, stateKey, membership)
	}
	toDev := func(typ, user, device string) string {
		return fmt.Sprintf(`{"type": "%s", "sender": "@b:localhost", "to_user_id": "%s", "to_device_id": "%s", "content": {}}`, typ, user, device)
	}
	const counts = "org.matrix.msc3202.device_one_time_keys_count"
	return []spineElement{
		{"events", ev(`m.x\u0000y`, room, "$bad1", sender)},
		{"events", ev("m.x\xffy", room, "$bad2", sender)},
		{"events", ev("m.room.message", `!spine2\u0000:localhost`, "$bad3", sender)},
		{"events", ev("m.room.message", "!spine2\xfe:localhost", "$bad4", sender)},
		{"events", ev("m.room.message", room, `$bad\u00005`, sender)},
		{"events", ev("m.room.message", room, "$bad\xc36", sender)},
		{"events", ev("m.room.message", room, "$bad7", `@a\u0000:localhost`)},
		{"events", ev("m.room.message", room, "$bad8", "@a\xff:localhost")},
		{"events", member(`@x\u0000:localhost`, "join")},
		{"events", member("@x:localhost", `jo\u0000in`)},
		{"events", member("@x:localhost", "jo\xffin")},
		{"events", `{"type": 5, "room_id": "!spine2:localhost", "event_id": "$bad9", "sender": "@a:localhost"}`},
		{"events", `{"type": "m.room.message", "room_id": ["!spine2:localhost"], "event_id": "$bad10", "sender": "@a:localhost"}`},
		{"events", `{"type": "m.room.message", "room_id": "!spine2:localhost", "event_id": "$bad11", "sender": "@a:localhost", "content": "text"}`},
		{"events", `{"type": "m.room.message", "room_id": "!spine2:localhost", "event_id": "$bad12", "sender": "@a:localhost", "content": {}, "origin_server_ts": 1e400}`},
		{"events", `{"type": "m.room.message", "room_id": "!spine2:localhost", "event_id": "$bad13", "sender": "@a:localhost", "content": {}, "origin_server_ts": -1}`},
		{"events", `"just a string"`},
		{"events", `{"type": "m.room.message", "room_id": "!spine2:localhost", "event_id": "$` + strings.Repeat("x", 300) + `", "sender": "@a:localhost", "content": {}}`},
		{"de.sorunome.msc2409.to_device", toDev(`t\u0000`, "@mls_spine:localhost", "D0")},
		{"de.sorunome.msc2409.to_device", toDev("t", "@mls_spine:localhost", `D\u0000`)},
		{"de.sorunome.msc2409.to_device", toDev("t", "@mls_spine\xff:localhost", "D0")},
		{"de.sorunome.msc2409.to_device", `{"type": "t", "sender": "@b:localhost", "to_user_id": 7, "to_device_id": "D0"}`},
		{counts, `{"@mls_spine:localhost": {"D0": {"spine.big": 2147483648}}}`},
		{counts, `{"@mls_spine:localhost": {"D0": {"spine.huge": 1e30}}}`},
		{counts, `{"@mls_spine:localhost": {"D0": {"spine.neg": -1}}}`},
		{counts, `{"@mls_spine:localhost": {"D0": {"spine.str": "7"}}}`},
		{counts, `{"@mls_spine:localhost": {"D0": {"spine.nul\u0000": 1}}}`},
		{"org.matrix.msc3202.device_lists", `{"changed": ["@a\u0000:localhost"]}`},
		{"org.matrix.msc3202.device_lists", `{"changed": [["@a:localhost"]]}`},
	}
}

// transactionJSON builds a transaction body from elements; the keys whose
// value is an object (counts, device lists) take the last element given.
func transactionJSON(els []spineElement) []byte {
	lists := map[string][]string{}
	objects := map[string]string{}
	var order []string
	for _, e := range els {
		if _, ok := lists[e.key]; !ok {
			if _, ok := objects[e.key]; !ok {
				order = append(order, e.key)
			}
		}
		if e.key == "events" || e.key == "de.sorunome.msc2409.to_device" {
			lists[e.key] = append(lists[e.key], e.json)
		} else {
			objects[e.key] = e.json
		}
	}
	var buf bytes.Buffer
	buf.WriteString(`{"events": [` + strings.Join(lists["events"], ", ") + `]`)
	for _, k := range order {
		switch {
		case k == "events":
		case lists[k] != nil:
			buf.WriteString(`, "` + k + `": [` + strings.Join(lists[k], ", ") + `]`)
		default:
			buf.WriteString(`, "` + k + `": ` + objects[k])
		}
	}
	buf.WriteString("}")
	return buf.Bytes()
}

// putRaw sends a transaction body and reports whether it was acknowledged.
func putRaw(base, hsToken, txnID string, body []byte) bool {
	req, err := http.NewRequest(http.MethodPut, base+"/_matrix/app/v1/transactions/"+txnID, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Authorization", "Bearer "+hsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// runCommand runs an operator subcommand of the real binary and returns
// its output.
func runCommand(t testing.TB, cfgPath string, args ...string) string {
	t.Helper()
	out, err := commandProcess(cfgPath, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mls-appservice %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runCommandFails runs a subcommand that must fail and returns its output.
func runCommandFails(t *testing.T, cfgPath string, args ...string) string {
	t.Helper()
	out, err := commandProcess(cfgPath, args...).CombinedOutput()
	if err == nil {
		t.Fatalf("mls-appservice %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return string(out)
}

func commandProcess(cfgPath string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-c", cfgPath}, args...)...)
	cmd.Env = append(os.Environ(), runAsMain+"=1")
	return cmd
}
