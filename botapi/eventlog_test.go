package botapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/botapi/client"
	"github.com/mls-appservice/mls-appservice/bots"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/groups"
	"github.com/mls-appservice/mls-appservice/seal"
)

// logOnly stands in for groups where only the puppets' delivery logs
// matter: it appends to and reads the real delivery tables as groups
// does (numbers under the puppet's row lock, in commit order), but keeps
// the content unsealed. Everything else is refused. The service-level
// test (cmd/mls-appservice, TestBotAPIEndToEnd) runs the real groups.
type logOnly struct {
	Groups // nil: any other method panics, and the test fails
	db     *database.DB
	mu     sync.Mutex
	wait   map[id.UserID]chan struct{}
}

func (g *logOnly) PuppetID(name string) id.UserID { return id.UserID("@mls_" + name + ":hs") }

func (g *logOnly) deliver(ctx context.Context, puppet id.UserID, body string) error {
	err := g.db.InTxRetry(ctx, func(tx pgx.Tx) error {
		var seq, log int64
		if err := tx.QueryRow(ctx, `INSERT INTO delivery_cursor (user_id, last_seq) VALUES ($1, 1)
			ON CONFLICT (user_id) DO UPDATE SET last_seq = delivery_cursor.last_seq + 1 RETURNING last_seq, log_no`, puppet).Scan(&seq, &log); err != nil {
			return err
		}
		content, _ := json.Marshal(map[string]string{"body": body})
		// A pause inside the transaction, so that concurrent deliveries
		// overlap and commit out of start order.
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		_, err := tx.Exec(ctx, `INSERT INTO delivery (log_no, seq, room_id, event_id, kind, sender, event_type, content)
			VALUES ($1, $2, '!r:hs', $3, 'message', '@x:hs', 'm.room.message', $4)`, log, seq, "$"+body, content)
		return err
	})
	if err != nil {
		return err
	}
	g.mu.Lock()
	if ch := g.wait[puppet]; ch != nil {
		close(ch)
		delete(g.wait, puppet)
	}
	g.mu.Unlock()
	return nil
}

func (g *logOnly) Log(ctx context.Context, puppet id.UserID, after int64, limit int) ([]groups.Delivered, error) {
	rows, err := g.db.Query(ctx, `SELECT seq, event_id, content, created_at FROM delivery
		WHERE log_no = (SELECT log_no FROM delivery_cursor WHERE user_id = $1) AND seq > $2 ORDER BY seq LIMIT $3`, puppet, after, limit)
	if err != nil {
		return nil, err
	}
	var out []groups.Delivered
	var d groups.Delivered
	_, err = pgx.ForEachRow(rows, []any{&d.Seq, &d.EventID, &d.Content, &d.DeliveredAt}, func() error {
		d.Puppet, d.Kind, d.RoomID, d.Type = puppet, groups.KindMessage, "!r:hs", "m.room.message"
		out = append(out, d)
		return nil
	})
	return out, err
}

func (g *logOnly) Wait(puppet id.UserID) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.wait[puppet] == nil {
		g.wait[puppet] = make(chan struct{})
	}
	return g.wait[puppet]
}

// TestEventLogAcrossInstances delivers concurrently to three puppets of
// a bot while its event stream is read from three instances in turn (one
// started after the others stopped), and while a webhook receiver that
// fails, then is down, then recovers, is fed by two instances at once:
// every event exactly once, in order, with contiguous ids.
func TestEventLogAcrossInstances(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	reg := bots.New(db)
	token, err := reg.Add(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	g := &logOnly{db: db, wait: map[id.UserID]chan struct{}{}}
	puppets := []id.UserID{"@mls_p1:hs", "@mls_p2:hs", "@mls_p3:hs"}
	for _, p := range puppets {
		if err := reg.Claim(ctx, "b", p); err != nil {
			t.Fatal(err)
		}
	}
	key, _ := seal.GenerateKey()
	sealer, _ := seal.NewSealer(key)
	st := settings()
	st.RateLimit, st.RateBurst, st.Poll = 1000, 1000, config50ms()
	st.WebhookAttempts, st.WebhookBackoff, st.WebhookMaxBackoff = 3, config50ms(), config50ms()
	instance := func() (*Server, *httptest.Server, context.CancelFunc) {
		s := New(Config{Settings: st, DB: db, Registry: reg, Groups: g, Sealer: sealer,
			Metrics: NewMetrics(prometheus.NewRegistry()), Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		rctx, cancel := context.WithCancel(ctx)
		go s.hooks.run(rctx)
		srv := httptest.NewServer(s.Handler())
		return s, srv, func() { cancel(); srv.Close() }
	}
	_, srv1, stop1 := instance()
	_, srv2, stop2 := instance()
	defer stop2()

	// The webhook receiver: fails 5 deliveries (parking the webhook after
	// 3), is resumed, then answers 2xx.
	var hmu sync.Mutex
	failLeft, hookIDs, hookSeqs, outOfOrder := 5, map[int64]int{}, map[id.UserID]int64{}, 0
	var lastHook int64
	var secret string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		hmu.Lock()
		defer hmu.Unlock()
		if err := client.VerifyWebhook(secret, r.Header.Get(client.SignatureHeader), body, time.Minute, time.Now()); err != nil {
			t.Errorf("delivery does not verify: %v", err)
			w.WriteHeader(401)
			return
		}
		if failLeft > 0 {
			failLeft--
			w.WriteHeader(500)
			return
		}
		var ev client.Event
		_ = json.Unmarshal(body, &ev)
		n, _ := strconv.ParseInt(ev.ID, 10, 64)
		if n <= lastHook || ev.Seq <= hookSeqs[id.UserID(ev.Puppet)] {
			outOfOrder++
		}
		lastHook, hookSeqs[id.UserID(ev.Puppet)] = n, ev.Seq
		hookIDs[n]++
		w.WriteHeader(204)
	}))
	defer receiver.Close()
	c1 := client.New(srv1.URL, token)
	zero := int64(0)
	hook, err := c1.SetWebhook(ctx, receiver.URL, &zero)
	if err != nil {
		t.Fatal(err)
	}
	hmu.Lock()
	secret = hook.Secret
	hmu.Unlock()

	// Deliveries: three writers, 150 entries in all.
	const total = 150
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total / 3 {
				if err := g.deliver(ctx, puppets[(w+i)%3], fmt.Sprintf("w%d-%d", w, i)); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
			}
		}()
	}

	seen := map[int64]int{}
	seqs := map[string]int64{}
	badOrder := 0
	read := func(c *client.Client, after string, n int) string {
		s, err := c.Events(ctx, after)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for range n {
			ev, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := strconv.ParseInt(ev.ID, 10, 64)
			seen[id]++
			if ev.Seq <= seqs[ev.Puppet] {
				badOrder++
			}
			seqs[ev.Puppet] = ev.Seq
		}
		return s.LastID
	}
	last := read(c1, "0", 40)
	stop1() // the first instance goes away
	last = read(client.New(srv2.URL, token), last, 40)
	_, srv3, stop3 := instance() // a new one, with nothing in memory
	defer stop3()
	wg.Wait()
	last = read(client.New(srv3.URL, token), last, total-80)
	if last != strconv.Itoa(total) {
		t.Errorf("last id %s, want %d", last, total)
	}
	for i := int64(1); i <= total; i++ {
		if seen[i] != 1 {
			t.Errorf("event %d seen %d times", i, seen[i])
		}
	}
	if badOrder != 0 {
		t.Errorf("%d events out of their puppet's order", badOrder)
	}

	// The webhook parked after 3 failures; resume it and it catches up.
	c2 := client.New(srv2.URL, token)
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := c2.Webhook(ctx)
		if err == nil && h.Parked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook not parked: %+v %v", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c2.ResumeWebhook(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		h, err := c2.Webhook(ctx)
		if err == nil && h.Position == total && h.Pending == 0 {
			break
		}
		if h.Parked {
			if _, err := c2.ResumeWebhook(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("webhook did not catch up: %+v %v", h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	hmu.Lock()
	defer hmu.Unlock()
	for i := int64(1); i <= total; i++ {
		if hookIDs[i] != 1 {
			t.Errorf("webhook delivered event %d %d times", i, hookIDs[i])
		}
	}
	if outOfOrder != 0 {
		t.Errorf("%d webhook deliveries out of order", outOfOrder)
	}
	var apiErr *client.Error
	if _, err := client.New(srv2.URL, token).Events(ctx, strconv.Itoa(total+5)); !errors.As(err, &apiErr) || apiErr.Field != "Last-Event-ID" {
		t.Errorf("resume beyond the log: %v", err)
	}
}
