package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/botapi"
	"github.com/mls-appservice/mls-appservice/botapi/client"
)

// sseCollector reads one bot's event stream across reconnections and
// counts what it got.
type sseCollector struct {
	t *testing.T
	c *client.Client

	mu     sync.Mutex
	ids    map[int64]int             // event id -> times seen
	bodies map[string]map[string]int // puppet -> message body -> times seen
	last   string
	stream *client.Stream
	done   chan struct{}
}

func newCollector(t *testing.T) *sseCollector {
	return &sseCollector{t: t, ids: map[int64]int{}, bodies: map[string]map[string]int{}}
}

// connect opens the stream at base after the last id seen (or after).
func (s *sseCollector) connect(c *client.Client, after string) {
	s.t.Helper()
	s.mu.Lock()
	if s.last != "" {
		after = s.last
	}
	s.mu.Unlock()
	st, err := c.Events(context.Background(), after)
	if err != nil {
		s.t.Fatalf("open event stream after %q: %v", after, err)
	}
	s.stream, s.done = st, make(chan struct{})
	go func() {
		defer close(s.done)
		for {
			ev, err := st.Next()
			if err != nil {
				return
			}
			n, _ := strconv.ParseInt(ev.ID, 10, 64)
			s.mu.Lock()
			s.ids[n]++
			s.last = ev.ID
			if ev.Kind == "message" {
				var m struct {
					Body string `json:"body"`
				}
				_ = json.Unmarshal(ev.Content, &m)
				if s.bodies[ev.Puppet] == nil {
					s.bodies[ev.Puppet] = map[string]int{}
				}
				s.bodies[ev.Puppet][m.Body]++
			}
			s.mu.Unlock()
		}
	}()
}

func (s *sseCollector) disconnect() {
	s.stream.Close()
	<-s.done
}

func (s *sseCollector) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// hookReceiver is a bot's webhook endpoint: it verifies each delivery
// and fails the first few on purpose.
type hookReceiver struct {
	secret string

	mu        sync.Mutex
	failLeft  int
	ids       map[int64]int
	order     []int64
	bodies    map[string]map[string]int
	rejected  int
	lastBody  []byte
	lastSig   string
	outOfTurn int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := client.VerifyWebhook(h.secret, r.Header.Get(client.SignatureHeader), body, client.DefaultTolerance, time.Now()); err != nil {
		h.rejected++
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if h.failLeft > 0 {
		h.failLeft--
		http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
		return
	}
	var ev client.Event
	if err := json.Unmarshal(body, &ev); err != nil || r.Header.Get(client.EventIDHeader) != ev.ID {
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	n, _ := strconv.ParseInt(ev.ID, 10, 64)
	if len(h.order) > 0 && n <= h.order[len(h.order)-1] {
		h.outOfTurn++
	}
	h.ids[n]++
	h.order = append(h.order, n)
	if ev.Kind == "message" {
		var m struct {
			Body string `json:"body"`
		}
		_ = json.Unmarshal(ev.Content, &m)
		if h.bodies[ev.Puppet] == nil {
			h.bodies[ev.Puppet] = map[string]int{}
		}
		h.bodies[ev.Puppet][m.Body]++
	}
	h.lastBody, h.lastSig = body, r.Header.Get(client.SignatureHeader)
	w.WriteHeader(http.StatusNoContent)
}

// tally counts, for the messages of want (puppet -> bodies), those seen
// exactly once, and the repeats.
func tally(got map[string]map[string]int, want map[string][]string) (ok, total, dup int) {
	for puppet, bodies := range want {
		for _, b := range bodies {
			total++
			switch got[puppet][b] {
			case 0:
			case 1:
				ok++
			default:
				dup++
			}
		}
	}
	return ok, total, dup
}

// TestBotAPIEndToEnd runs two bots with two puppets each in a shared DMLS
// room through the real binary's bot API: messages both ways, one bot
// reading by server-sent events (disconnected mid-stream, the service
// killed and restarted while it is away, a second instance of the
// service in between), the other by a webhook that is down, then failing,
// then well; retried sends, another bot's puppet, malformed requests.
func TestBotAPIEndToEnd(t *testing.T) {
	_, svcs := startServices(t, botAPIOptions(t, "mlsa"))
	S := svcs[0]
	ctx := context.Background()
	base := botAPIBase(t, S.cfgPath)
	tokA, tokB := addBot(t, S.cfgPath, "alpha"), addBot(t, S.cfgPath, "beta")
	ca, cb := client.New(base, tokA), client.New(base, tokB)
	mk := func(c *client.Client, name string) string {
		p, err := c.CreatePuppet(ctx, client.CreatePuppet{Name: name, DisplayName: strings.ToUpper(name)})
		if err != nil {
			t.Fatalf("create puppet %s: %v", name, err)
		}
		return p.UserID
	}
	a1, a2, b1, b2 := mk(ca, "a1"), mk(ca, "a2"), mk(cb, "b1"), mk(cb, "b2")
	room, err := ca.CreateRoom(ctx, a1, client.CreateRoom{Name: "shared", Invite: []string{a2, b1, b2}})
	if err != nil {
		t.Fatal(err)
	}

	// Bot beta reads by server-sent events from the start of its log.
	sse := newCollector(t)
	sse.connect(cb, "0")
	// Bot alpha's webhook: nothing listens on its port yet.
	hookPort := freePort(t)
	zero := int64(0)
	hook, err := ca.SetWebhook(ctx, fmt.Sprintf("http://127.0.0.1:%d/hook", hookPort), &zero)
	if err != nil {
		t.Fatal(err)
	}
	recv := &hookReceiver{secret: hook.Secret, ids: map[int64]int{}, bodies: map[string]map[string]int{}}

	waitConverged(t, ca, a1, room, 4)

	// What each bot must get: puppet -> bodies.
	wantSSE, wantHook := map[string][]string{}, map[string][]string{}
	sent, idempotent := 0, 0
	send := func(c *client.Client, sender, body string) {
		t.Helper()
		key := "k-" + strings.ReplaceAll(body, " ", "_")
		first := sendRetry(t, c, sender, room, body, key)
		sent++
		for _, p := range []string{b1, b2} {
			if p != sender {
				wantSSE[p] = append(wantSSE[p], body)
			}
		}
		for _, p := range []string{a1, a2} {
			if p != sender {
				wantHook[p] = append(wantHook[p], body)
			}
		}
		if sent%3 == 0 {
			// A retry with the same Idempotency-Key: the first result, not a second message.
			again := sendRetry(t, c, sender, room, body, key)
			if again.TxnID != first.TxnID || (first.EventID != "" && again.EventID != "" && again.EventID != first.EventID) {
				t.Errorf("retried send of %q: %+v, first %+v", body, again, first)
			} else {
				idempotent++
			}
		}
	}
	for i := range 4 {
		send(ca, a1, fmt.Sprintf("a1 first %d", i))
		send(cb, b1, fmt.Sprintf("b1 first %d", i))
	}

	// Mid-stream disconnect, messages while away, reconnect with Last-Event-ID.
	eventually(t, time.Minute, "events on the stream", func() (bool, error) { return sse.count() >= 3, nil })
	sse.disconnect()
	resumed := 0
	for i := range 3 {
		send(ca, a2, fmt.Sprintf("a2 away %d", i))
		send(cb, b2, fmt.Sprintf("b2 away %d", i))
	}
	sse.connect(cb, "")
	resumed++

	// With nothing listening, the webhook fails until it is parked.
	eventually(t, time.Minute, "the webhook parked", func() (bool, error) {
		h, err := ca.Webhook(ctx)
		return h.Parked && h.Attempts >= 4 && h.LastError != "", err
	})

	// A second instance over the same database; then the first is killed
	// while the stream is away, and the stream resumes on the second.
	sse.disconnect()
	_, base2 := secondInstance(t, S.cfgPath)
	ca2, cb2 := client.New(base2, tokA), client.New(base2, tokB)
	S.proc.kill(t)
	for i := range 2 {
		send(ca2, a1, fmt.Sprintf("a1 during restart %d", i))
		send(cb2, b1, fmt.Sprintf("b1 during restart %d", i))
	}
	sse.connect(cb2, "")
	resumed++
	time.Sleep(time.Second)
	sse.disconnect()
	S.proc = startService(t, S.cfgPath)
	for i := range 2 {
		send(cb, b2, fmt.Sprintf("b2 after restart %d", i))
		send(ca, a2, fmt.Sprintf("a2 after restart %d", i))
	}
	sse.connect(cb, "")
	resumed++

	// The receiver comes up, fails three deliveries, then recovers; the
	// bot resumes its parked webhook.
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", hookPort))
	if err != nil {
		t.Fatal(err)
	}
	recv.failLeft = 3
	hs := &http.Server{Handler: recv, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	if _, err := ca.ResumeWebhook(ctx); err != nil {
		t.Fatal(err)
	}

	// Another bot's puppet: 403, whatever the route.
	forbidden := 0
	for _, try := range []func() error{
		func() error {
			_, err := cb.Send(ctx, a1, room, "m.room.message", map[string]string{"body": "x"}, "")
			return err
		},
		func() error { _, err := cb.Room(ctx, a1, room); return err },
		func() error { return cb.Invite(ctx, a1, room, b1) },
		func() error { return cb.DeletePuppet(ctx, a2) },
		func() error { _, err := cb.CreatePuppet(ctx, client.CreatePuppet{Name: "a1"}); return err },
	} {
		var e *client.Error
		if err := try(); errors.As(err, &e) && e.Status == 403 && e.Code == "forbidden" {
			forbidden++
		} else {
			t.Errorf("acting as another bot's puppet: %v", err)
		}
	}
	// Malformed requests: 4xx naming the field.
	raw := func(method, path, body string) (int, botapi.Error) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tokB)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e botapi.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	msgs := "/v1/puppets/" + b1 + "/rooms/" + room + "/messages"
	for _, m := range []struct {
		method, path, body string
		status             int
		field              string
	}{
		{"POST", msgs, `{"type":"m.room.message","content":{"body":"x"},"extra":1}`, 400, "extra"},
		{"POST", msgs, `{"type":"m.room.message","content":"text"}`, 400, "content"},
		{"POST", msgs, `{"type":5,"content":{}}`, 400, "type"},
		{"POST", msgs, `{"content":{}}`, 400, "type"},
		{"POST", "/v1/puppets/" + b1 + "/rooms/!nosuchroom:" + strings.Split(b1, ":")[1] + "/messages", `{"type":"m.room.message","content":{}}`, 404, "room"},
		{"GET", "/v1/puppets/" + b1 + "/rooms/" + room + "/messages?limit=0", "", 400, "limit"},
		{"POST", "/v1/puppets", `{"name":"b9","display_name":["x"]}`, 400, "display_name"},
	} {
		status, e := raw(m.method, m.path, m.body)
		if status != m.status || e.Field != m.field || e.Code == "" {
			t.Errorf("%s %s %s: %d %+v, want %d naming %s", m.method, m.path, m.body, status, e, m.status, m.field)
		}
	}
	// A puppet that is not in a room it names: a room of the service but not its.
	{
		other, err := cb.CreateRoom(ctx, b2, client.CreateRoom{Name: "b2 alone"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cb.Send(ctx, b1, other, "m.room.message", map[string]string{"body": "x"}, "")
		var e *client.Error
		if !errors.As(err, &e) || e.Status != 403 || e.Code != "not_in_room" || e.Field != "room" {
			t.Errorf("send to a room the puppet is not in: %v", err)
		}
	}

	// Everything arrives, once, in order.
	var sseOK, sseWant, sseDup, hookOK, hookWant, hookDup int
	deadline := time.Now().Add(4 * time.Minute)
	for {
		sse.mu.Lock()
		sseOK, sseWant, sseDup = tally(sse.bodies, wantSSE)
		sse.mu.Unlock()
		recv.mu.Lock()
		hookOK, hookWant, hookDup = tally(recv.bodies, wantHook)
		recv.mu.Unlock()
		if (sseOK == sseWant && hookOK == hookWant) || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	sse.disconnect()

	// The room's history as b2 got it, newest first, in pages.
	page, err := cb.History(ctx, b2, room, 0, 5)
	if err != nil || len(page.Events) != 5 || page.NextBefore == 0 {
		t.Errorf("history: %+v %v", page, err)
	} else if older, err := cb.History(ctx, b2, room, page.NextBefore, 5); err != nil || len(older.Events) == 0 ||
		older.Events[0].Seq >= page.Events[4].Seq || page.Events[0].Seq <= page.Events[4].Seq {
		t.Errorf("history's next page: %+v %v", older, err)
	}

	// Tampered deliveries and replays are refused by the receiver.
	tamperedWant, tampered := 3, 0
	recv.mu.Lock()
	body, sig := recv.lastBody, recv.lastSig
	rejectedBefore := recv.rejected
	recv.mu.Unlock()
	hookURL := fmt.Sprintf("http://127.0.0.1:%d/hook", hookPort)
	post := func(b []byte, s string) int {
		req, _ := http.NewRequest("POST", hookURL, bytes.NewReader(b))
		req.Header.Set(client.SignatureHeader, s)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if body == nil {
		t.Fatal("the webhook delivered nothing")
	}
	changed := bytes.Replace(body, []byte(`"kind":"`), []byte(`"kind":"x`), 1)
	old := botapi.Sign([]byte(recv.secret), time.Now().Add(-10*time.Minute), body)
	forged := botapi.Sign([]byte("whsec_guess"), time.Now(), body)
	for _, try := range []struct {
		b []byte
		s string
	}{{changed, sig}, {body, old}, {body, forged}} {
		if post(try.b, try.s) == http.StatusUnauthorized {
			tampered++
		}
	}
	recv.mu.Lock()
	if recv.rejected-rejectedBefore != tampered {
		t.Errorf("receiver rejected %d, want %d", recv.rejected-rejectedBefore, tampered)
	}
	recv.mu.Unlock()

	// The stream's ids: every one from the first to the last, once.
	sse.mu.Lock()
	var maxID int64
	for id := range sse.ids {
		maxID = max(maxID, id)
	}
	gaps, repeats := 0, 0
	for id := int64(1); id <= maxID; id++ {
		switch sse.ids[id] {
		case 0:
			gaps++
		case 1:
		default:
			repeats++
		}
	}
	sse.mu.Unlock()
	recv.mu.Lock()
	hookRepeats := 0
	for _, n := range recv.ids {
		if n > 1 {
			hookRepeats++
		}
	}
	outOfTurn := recv.outOfTurn
	recv.mu.Unlock()
	duplicates := sseDup + hookDup + repeats + hookRepeats

	fmt.Printf("botapi: bots=2 puppets=4 sent=%d delivered_sse=%d/%d resumed=%d delivered_webhook=%d/%d duplicates=%d tampered_rejected=%d/%d idempotent_retries=%d\n",
		sent, sseOK, sseWant, resumed, hookOK, hookWant, duplicates, tampered, tamperedWant, idempotent)
	if sseOK != sseWant || hookOK != hookWant || duplicates != 0 || gaps != 0 || outOfTurn != 0 {
		t.Errorf("sse %d/%d, webhook %d/%d, duplicates %d, gaps in stream ids %d, webhook deliveries out of order %d",
			sseOK, sseWant, hookOK, hookWant, duplicates, gaps, outOfTurn)
	}
	if tampered != tamperedWant || forbidden != 5 || idempotent == 0 {
		t.Errorf("tampered rejected %d/%d, forbidden %d/5, idempotent retries %d", tampered, tamperedWant, forbidden, idempotent)
	}
	h, err := ca.Webhook(ctx)
	if err != nil || h.Parked || h.Pending != 0 || h.Failures < 4 {
		t.Errorf("webhook at the end: %+v %v", h, err)
	}
}
