package csapi

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/groups"
)

// memLookup is a puppet's deliveries held in memory: the rewriter's seam
// to groups, so that the rewriting rules are tested without a database
// (the end-to-end test in cmd/mls-appservice runs them against groups).
type memLookup struct {
	mu      sync.Mutex
	d       map[id.EventID]*groups.Delivered
	txns    map[id.EventID]string
	changed chan struct{}
}

func newMemLookup() *memLookup {
	return &memLookup{d: map[id.EventID]*groups.Delivered{}, txns: map[id.EventID]string{}, changed: make(chan struct{})}
}

func (l *memLookup) delivery(_ context.Context, ev id.EventID) (*groups.Delivered, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.d[ev], nil
}

func (l *memLookup) txnID(_ context.Context, ev id.EventID) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.txns[ev], nil
}

func (l *memLookup) wait() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *memLookup) deliver(d *groups.Delivered) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.d[d.EventID] = d
	close(l.changed)
	l.changed = make(chan struct{})
}

const testAlg = dmlsPrefix + "dhkemx25519-aes128gcm-sha256-ed25519"

func testRewriter(look lookup, hold time.Duration) *rewriter {
	return &rewriter{puppet: "@bot:hs", device: "DEV", look: look, now: time.Now, hold: hold, maxAge: time.Minute,
		poll: 20 * time.Millisecond, metrics: NewMetrics(prometheus.NewRegistry()), log: zerolog.Nop()}
}

// encrypted is a DMLS event as the homeserver gives it.
func encrypted(eventID, sender string, commit bool) map[string]any {
	content := map[string]any{"algorithm": testAlg, "ciphertext": "AAAA", "dmls_epoch": "BBBB"}
	if commit {
		content["dmls_next_epoch"] = "CCCC"
	}
	return map[string]any{"type": "m.room.encrypted", "event_id": eventID, "sender": sender,
		"origin_server_ts": time.Now().UnixMilli(), "content": content, "unsigned": map[string]any{"age": 10, "transaction_id": "mlsas.x"}}
}

func syncBody(t *testing.T, events []any, toDevice []any) []byte {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"next_batch": "s1",
		"rooms": map[string]any{"join": map[string]any{"!r:hs": map[string]any{
			"timeline": map[string]any{"events": events, "limited": false},
			"state":    map[string]any{"events": []any{}},
		}}},
		"to_device": map[string]any{"events": toDevice},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

type syncAnswer struct {
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events  []map[string]any `json:"events"`
				Limited *bool            `json:"limited"`
			} `json:"timeline"`
		} `json:"join"`
	} `json:"rooms"`
	ToDevice struct {
		Events []map[string]any `json:"events"`
	} `json:"to_device"`
}

func note(ev map[string]any) map[string]any {
	u, _ := ev["unsigned"].(map[string]any)
	n, _ := u[noteKey].(map[string]any)
	return n
}

func TestRewriteSync(t *testing.T) {
	look := newMemLookup()
	look.deliver(&groups.Delivered{EventID: "$msg", Kind: groups.KindMessage, Sender: "@other:hs", SenderDevice: "O",
		Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"hi"}`)})
	look.deliver(&groups.Delivered{EventID: "$own", Kind: groups.KindMessage, Sender: "@bot:hs", SenderDevice: "DEV",
		Type: "m.room.message", Content: json.RawMessage(`{"msgtype":"m.text","body":"mine"}`)})
	look.txns["$own"] = "bot-txn-1"
	look.deliver(&groups.Delivered{EventID: "$bad", Kind: groups.KindUndecryptable, Content: json.RawMessage(`{"reason":"unknown_epoch"}`)})
	member := map[string]any{"type": "m.room.member", "state_key": "@other:hs", "event_id": "$m", "sender": "@other:hs",
		"content": map[string]any{"membership": "join"}}
	megolm := map[string]any{"type": "m.room.encrypted", "event_id": "$megolm", "sender": "@x:hs",
		"content": map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}}
	events := []any{member, encrypted("$commit", "@other:hs", true), encrypted("$msg", "@other:hs", false),
		encrypted("$own", "@bot:hs", false), encrypted("$bad", "@other:hs", false), megolm}
	welcome := map[string]any{"type": "m.room.encrypted", "sender": "@other:hs",
		"content": map[string]any{"algorithm": dmlsPrefix + "welcome.x", "ciphertext": "AAAA"}}
	other := map[string]any{"type": "m.dummy", "sender": "@other:hs", "content": map[string]any{}}

	out, err := rewriteSync(t.Context(), testRewriter(look, time.Second), syncBody(t, events, []any{welcome, other}))
	if err != nil {
		t.Fatal(err)
	}
	var got syncAnswer
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.NextBatch != "s1" {
		t.Errorf("next_batch %q: the rest of the answer must pass unchanged", got.NextBatch)
	}
	tl := got.Rooms.Join["!r:hs"].Timeline
	if tl.Limited == nil || *tl.Limited {
		t.Errorf("timeline.limited lost: %v", tl.Limited)
	}
	var ids []string
	for _, ev := range tl.Events {
		ids = append(ids, ev["event_id"].(string))
	}
	if strings.Join(ids, " ") != "$m $msg $own $bad $megolm" {
		t.Fatalf("timeline %v, want the commit left out and the rest in order", ids)
	}
	msg, own, bad, mg := tl.Events[1], tl.Events[2], tl.Events[3], tl.Events[4]
	if msg["type"] != "m.room.message" || msg["content"].(map[string]any)["body"] != "hi" || msg["sender"] != "@other:hs" ||
		note(msg)["decrypted"] != true || note(msg)["sender_device"] != "O" {
		t.Errorf("decrypted message: %v", msg)
	}
	if _, ok := msg["unsigned"].(map[string]any)["transaction_id"]; ok {
		t.Errorf("another's message keeps the outbox's transaction_id: %v", msg)
	}
	if own["unsigned"].(map[string]any)["transaction_id"] != "bot-txn-1" {
		t.Errorf("own message: transaction_id %v, want the bot's", own["unsigned"])
	}
	if bad["type"] != "m.room.encrypted" || note(bad)["undecryptable"] != true || note(bad)["reason"] != "unknown_epoch" {
		t.Errorf("undecryptable: %v", bad)
	}
	if mg["type"] != "m.room.encrypted" || note(mg) != nil {
		t.Errorf("a Megolm event is not the façade's: %v", mg)
	}
	if len(got.ToDevice.Events) != 1 || got.ToDevice.Events[0]["type"] != "m.dummy" {
		t.Errorf("to_device %v, want the DMLS Welcome left out and the rest kept", got.ToDevice.Events)
	}
}

// An event groups has not delivered yet holds the answer until it is,
// and one it never delivers is given undecryptable when the hold ends.
func TestRewriteSyncHolds(t *testing.T) {
	look := newMemLookup()
	body := syncBody(t, []any{encrypted("$late", "@other:hs", false)}, nil)
	go func() {
		time.Sleep(100 * time.Millisecond)
		look.deliver(&groups.Delivered{EventID: "$late", Kind: groups.KindMessage, Type: "m.room.message",
			Content: json.RawMessage(`{"body":"late"}`)})
	}()
	start := time.Now()
	out, err := rewriteSync(t.Context(), testRewriter(look, 10*time.Second), body)
	if err != nil {
		t.Fatal(err)
	}
	var got syncAnswer
	_ = json.Unmarshal(out, &got)
	ev := got.Rooms.Join["!r:hs"].Timeline.Events[0]
	if ev["type"] != "m.room.message" || time.Since(start) > 5*time.Second {
		t.Errorf("after %s: %v, want the late event decrypted as soon as it was delivered", time.Since(start), ev)
	}

	start = time.Now()
	body = syncBody(t, []any{encrypted("$never", "@other:hs", false)}, nil)
	out, err = rewriteSync(t.Context(), testRewriter(newMemLookup(), 200*time.Millisecond), body)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(out, &got)
	ev = got.Rooms.Join["!r:hs"].Timeline.Events[0]
	if took := time.Since(start); took < 200*time.Millisecond || took > 3*time.Second {
		t.Errorf("held %s, want the hold (200ms)", took)
	}
	if ev["type"] != "m.room.encrypted" || note(ev)["reason"] != "not_decrypted_in_time" {
		t.Errorf("never delivered: %v", ev)
	}

	// An old event is not waited for: groups decided about it long ago.
	old := encrypted("$old", "@other:hs", false)
	old["unsigned"] = map[string]any{"age": int64(time.Hour / time.Millisecond)}
	start = time.Now()
	out, err = rewriteSync(t.Context(), testRewriter(newMemLookup(), 10*time.Second), syncBody(t, []any{old}, nil))
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(out, &got)
	ev = got.Rooms.Join["!r:hs"].Timeline.Events[0]
	if time.Since(start) > time.Second || note(ev)["reason"] != "not_delivered" {
		t.Errorf("after %s: %v, want an old event given at once, not delivered", time.Since(start), ev)
	}
}

func TestRewriteSyncMalformed(t *testing.T) {
	rw := testRewriter(newMemLookup(), 0)
	for _, body := range []string{``, `[]`, `null`, `"x"`, `{`} {
		if _, err := rewriteSync(t.Context(), rw, []byte(body)); err == nil {
			t.Errorf("%q: no error", body)
		} else if e := classify(err); e.status != 502 {
			t.Errorf("%q: %d, want 502 (the homeserver's fault, not the bot's)", body, e.status)
		}
	}
	// Odd parts of a well-formed answer pass unchanged.
	for _, body := range []string{`{}`, `{"rooms":5}`, `{"rooms":{"join":{"!r":{"timeline":{"events":"m.room.encrypted"}}}}}`,
		`{"rooms":{"join":{"!r":{"timeline":{"events":[5,"m.room.encrypted",{"type":"m.room.encrypted","content":[]}]}}}}}`} {
		out, err := rewriteSync(t.Context(), rw, []byte(body))
		if err != nil || !json.Valid(out) {
			t.Errorf("%s: %v %s", body, err, out)
		}
	}
}

func FuzzRewriteSync(f *testing.F) {
	f.Add([]byte(`{"rooms":{"join":{"!r":{"timeline":{"events":[{"type":"m.room.encrypted","event_id":"$e","content":{"algorithm":"` +
		testAlg + `"}}]}}}},"to_device":{"events":[{"type":"m.room.encrypted","content":{"algorithm":"` + testAlg + `"}}]}}`))
	f.Add([]byte(`{"rooms":{"leave":{"!r":{"timeline":{"events":[{"type":"m.room.encrypted","event_id":"$e","unsigned":5,"content":{"algorithm":"` +
		testAlg + `","dmls_next_epoch":"x"}}]}}}}}`))
	look := newMemLookup()
	look.deliver(&groups.Delivered{EventID: "$e", Kind: groups.KindMessage, Type: "m.room.message", Content: json.RawMessage(`{}`)})
	rw := testRewriter(look, 0)
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := rewriteSync(context.Background(), rw, body)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid JSON out of %q: %q", body, out)
		}
	})
}

func TestWidenFilter(t *testing.T) {
	for _, tc := range []struct {
		in   string
		sync bool
		want string
	}{
		{`{"room":{"timeline":{"types":["m.room.message"]}}}`, true, `{"room":{"timeline":{"types":["m.room.message","m.room.encrypted"]}}}`},
		{`{"room":{"timeline":{"types":["m.room.*"]}}}`, true, `{"room":{"timeline":{"types":["m.room.*"]}}}`},
		{`{"room":{"timeline":{"not_types":["m.room.encrypted","m.typing"]}}}`, true, `{"room":{"timeline":{"not_types":["m.typing"]}}}`},
		{`{"room":{"timeline":{"not_types":["*.encrypted"]}}}`, true, `{"room":{"timeline":{"not_types":[]}}}`},
		{`{"types":["m.room.message"],"limit":5}`, false, `{"limit":5,"types":["m.room.message","m.room.encrypted"]}`},
		{`{"room":{"timeline":{"limit":5}}}`, true, `{"room":{"timeline":{"limit":5}}}`},
		{`{"room":{"timeline":{"types":"x"}}}`, true, `{"room":{"timeline":{"types":"x"}}}`},
		{`not json`, true, `not json`},
	} {
		if got := string(widenFilter([]byte(tc.in), tc.sync)); got != tc.want {
			t.Errorf("widenFilter(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"m.room.encrypted", "m.room.encrypted", true},
		{"m.room.*", "m.room.encrypted", true},
		{"*", "m.room.encrypted", true},
		{"m.*.encrypted", "m.room.encrypted", true},
		{"m.*.message", "m.room.encrypted", false},
		{"m.room", "m.room.encrypted", false},
		{"*crypted*", "m.room.encrypted", true},
		{"m.room.encrypted*x", "m.room.encrypted", false},
	} {
		if got := globMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

func TestCreateRoomRequest(t *testing.T) {
	creation := map[string]any{"encryption": map[string]any{"algorithm": testAlg}}
	req, e := parseCreateRoom([]byte(`{"preset":"private_chat","invite":["@a:hs"],"creation_content":{"m.federate":false},` +
		`"initial_state":[{"type":"m.room.encryption","state_key":"","content":{"algorithm":"m.megolm.v1.aes-sha2"}},` +
		`{"type":"m.room.topic","state_key":"","content":{"topic":"t"}}]}`))
	if e != nil {
		t.Fatal(e)
	}
	if !req.asksForEncryption() {
		t.Error("an m.room.encryption initial state event asks for encryption")
	}
	out, err := req.makeDMLS(creation)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Preset          string           `json:"preset"`
		Invite          []string         `json:"invite"`
		CreationContent map[string]any   `json:"creation_content"`
		InitialState    []map[string]any `json:"initial_state"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	enc, _ := got.CreationContent["encryption"].(map[string]any)
	if got.Preset != "private_chat" || len(got.Invite) != 1 || got.CreationContent["m.federate"] != false || enc["algorithm"] != testAlg {
		t.Errorf("DMLS request: %s", out)
	}
	if len(got.InitialState) != 1 || got.InitialState[0]["type"] != "m.room.topic" {
		t.Errorf("initial_state %v, want m.room.encryption left out and the rest kept", got.InitialState)
	}

	plain, e := parseCreateRoom([]byte(`{"name":"x"}`))
	if e != nil || plain.asksForEncryption() {
		t.Errorf("a plain request asks for encryption: %v", e)
	}
	for _, body := range []string{``, `[]`, `null`, `{"creation_content":5}`, `{"creation_content":[]}`, `{"initial_state":{}}`} {
		if _, e := parseCreateRoom([]byte(body)); e == nil || e.status != 400 {
			t.Errorf("%q: %v, want 400", body, e)
		}
	}
}

func TestCheckPathValue(t *testing.T) {
	for _, v := range []string{"", strings.Repeat("x", maxTxnID+1), "a\x00b", "a\nb", "\xff"} {
		if checkPathValue("x", v) == nil {
			t.Errorf("%q accepted", v)
		}
	}
	for _, v := range []string{"1796229483252__inc1", "c6964d4d-6772-4eb0-bb7f-b83275d69b8a", "ü", strings.Repeat("x", maxTxnID)} {
		if err := checkPathValue("x", v); err != nil {
			t.Errorf("%q refused: %v", v, err)
		}
	}
}
