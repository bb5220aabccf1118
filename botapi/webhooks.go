package botapi

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/seal"
)

// Webhook headers (doc.go, "Webhooks").
const (
	SignatureHeader = "X-MLS-Signature"
	EventIDHeader   = "X-MLS-Event-ID"
)

const purposeWebhook seal.Purpose = "botapi webhook secret"

func webhookRow(bot string) seal.Binding { return seal.Row("bot_webhook", bot) }

// Sign returns the value of the X-MLS-Signature header for body sent at
// t: "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

func (s *Server) putWebhook(w http.ResponseWriter, r *http.Request, bot string) error {
	if e := checkQuery(r); e != nil {
		return e
	}
	var req webhookRequest
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &req, false); e != nil {
		return e
	}
	if e := checkWebhookURL("url", req.URL); e != nil {
		return e
	}
	ctx := r.Context()
	_, last, err := s.events.fanIn(ctx, bot)
	if err != nil {
		return err
	}
	position := last
	if req.After != nil {
		if *req.After < 0 || *req.After > last {
			return badField("after", "after must be an event id between 0 and %d", last)
		}
		position = *req.After
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("webhook secret: %w", err)
	}
	secret := "whsec_" + base64.RawURLEncoding.EncodeToString(raw)
	sealed, err := s.cfg.Sealer.Seal(purposeWebhook, webhookRow(bot), []byte(secret))
	if err != nil {
		return err
	}
	if _, err := s.cfg.DB.Exec(ctx, `INSERT INTO bot_webhook (bot, url, secret, position) VALUES ($1, $2, $3, $4)
		ON CONFLICT (bot) DO UPDATE SET url = $2, secret = $3, position = $4, attempts = 0, next_attempt_at = now(),
			parked_at = NULL, last_error = '', lease_until = NULL`, bot, req.URL, sealed, position); err != nil {
		return fmt.Errorf("save webhook of %q: %w", bot, err)
	}
	s.log.Info().Str("bot", bot).Int64("position", position).Msg("Bot registered a webhook")
	s.hooks.wake()
	st, err := s.webhookStatus(ctx, bot)
	if err != nil {
		return err
	}
	st.Secret = secret
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) getWebhook(w http.ResponseWriter, r *http.Request, bot string) error {
	if e := checkQuery(r); e != nil {
		return e
	}
	if _, _, err := s.events.fanIn(r.Context(), bot); err != nil {
		return err
	}
	st, err := s.webhookStatus(r.Context(), bot)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request, bot string) error {
	if e := checkQuery(r); e != nil {
		return e
	}
	tag, err := s.cfg.DB.Exec(r.Context(), `DELETE FROM bot_webhook WHERE bot = $1`, bot)
	if err != nil {
		return fmt.Errorf("delete webhook of %q: %w", bot, err)
	}
	if tag.RowsAffected() == 0 {
		return noWebhook()
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// resumeWebhook takes a parked webhook up again, with the event it
// stopped at.
func (s *Server) resumeWebhook(w http.ResponseWriter, r *http.Request, bot string) error {
	if e := checkQuery(r); e != nil {
		return e
	}
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &struct{}{}, true); e != nil {
		return e
	}
	tag, err := s.cfg.DB.Exec(r.Context(), `UPDATE bot_webhook SET parked_at = NULL, attempts = 0, next_attempt_at = now()
		WHERE bot = $1`, bot)
	if err != nil {
		return fmt.Errorf("resume webhook of %q: %w", bot, err)
	}
	if tag.RowsAffected() == 0 {
		return noWebhook()
	}
	s.log.Info().Str("bot", bot).Msg("Bot resumed its webhook")
	s.hooks.wake()
	st, err := s.webhookStatus(r.Context(), bot)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func noWebhook() *Error {
	return apiErr(http.StatusNotFound, CodeNoWebhook, "", "this bot has no webhook (PUT /v1/webhook registers one)")
}

func (s *Server) webhookStatus(ctx context.Context, bot string) (WebhookStatus, error) {
	var st WebhookStatus
	var next time.Time
	var top int64
	err := s.cfg.DB.QueryRow(ctx, `SELECT w.url, w.position, w.attempts, w.next_attempt_at, w.parked_at, w.last_error,
		w.delivered, w.failures, coalesce(c.last_seq, 0)
		FROM bot_webhook w LEFT JOIN bot_event_cursor c USING (bot) WHERE w.bot = $1`, bot).
		Scan(&st.URL, &st.Position, &st.Attempts, &next, &st.ParkedAt, &st.LastError, &st.Delivered, &st.Failures, &top)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, noWebhook()
	}
	if err != nil {
		return st, fmt.Errorf("read webhook of %q: %w", bot, err)
	}
	st.Pending = max(top-st.Position, 0)
	st.Parked = st.ParkedAt != nil
	if st.Attempts > 0 && !st.Parked {
		next = next.UTC()
		st.NextAttemptAt = &next
	}
	return st, nil
}

// dispatcher delivers webhooks: one goroutine per bot with a webhook
// (while it has one), each taking the next event after the webhook's
// position, POSTing it, and moving on only after a 2xx. A lease on the
// bot's row keeps two instances from sending the same webhook at once.
type dispatcher struct {
	s     *Server
	slots chan struct{}
	kick  chan struct{}

	mu      sync.Mutex
	running map[string]context.CancelFunc
}

func newDispatcher(s *Server) *dispatcher {
	return &dispatcher{s: s, slots: make(chan struct{}, s.cfg.Settings.WebhookWorkers), kick: make(chan struct{}, 1),
		running: map[string]context.CancelFunc{}}
}

func (d *dispatcher) wake() { signal(d.kick) }

// run starts and stops the per-bot loops as webhooks come and go.
func (d *dispatcher) run(ctx context.Context) error {
	poll := d.s.cfg.Settings.Poll.D()
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	defer func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, cancel := range d.running {
			cancel()
		}
	}()
	for {
		bots, err := d.webhookBots(ctx)
		if err != nil && ctx.Err() == nil {
			d.s.log.Error().Err(err).Msg("Listing webhooks failed")
		}
		if err == nil {
			d.mu.Lock()
			for bot, cancel := range d.running {
				if !bots[bot] {
					cancel()
					delete(d.running, bot)
				}
			}
			for bot := range bots {
				if d.running[bot] == nil {
					bctx, cancel := context.WithCancel(ctx)
					d.running[bot] = cancel
					go d.loop(bctx, bot)
				}
			}
			d.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-d.kick:
		}
	}
}

// webhookBots returns the bots whose webhooks may be delivered: not
// parked, not revoked.
func (d *dispatcher) webhookBots(ctx context.Context) (map[string]bool, error) {
	rows, err := d.s.cfg.DB.Query(ctx, `SELECT w.bot FROM bot_webhook w JOIN bot b ON b.name = w.bot
		WHERE w.parked_at IS NULL AND b.revoked_at IS NULL`)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	var b string
	_, err = pgx.ForEachRow(rows, []any{&b}, func() error { out[b] = true; return nil })
	return out, err
}

// loop delivers one bot's webhook until ctx ends (the webhook was
// deleted or parked, or the service stops).
func (d *dispatcher) loop(ctx context.Context, bot string) {
	f, unsubscribe := d.s.hub.subscribe(bot)
	defer unsubscribe()
	poll := d.s.cfg.Settings.Poll.D()
	for {
		wait, err := d.step(ctx, bot, f)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.s.log.Error().Err(err).Str("bot", bot).Msg("Webhook delivery step failed")
			wait = poll
		}
		if wait == 0 {
			continue
		}
		_, _, changed := f.state()
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// step delivers the next event of bot's webhook if one is due, and says
// how long to wait before the next step (0: at once).
func (d *dispatcher) step(ctx context.Context, bot string, f *feed) (time.Duration, error) {
	s := d.s
	poll := s.cfg.Settings.Poll.D()
	timeout := s.cfg.Settings.WebhookTimeout.D()
	var url string
	var sealed []byte
	var position int64
	var attempts int
	var wait time.Duration
	leased := false
	err := s.cfg.DB.InTx(ctx, func(tx pgx.Tx) error {
		var next time.Time
		var lease *time.Time
		var parked *time.Time
		var now time.Time
		err := tx.QueryRow(ctx, `SELECT url, secret, position, attempts, next_attempt_at, lease_until, parked_at, now()
			FROM bot_webhook WHERE bot = $1 FOR UPDATE`, bot).Scan(&url, &sealed, &position, &attempts, &next, &lease, &parked, &now)
		if errors.Is(err, pgx.ErrNoRows) {
			wait = poll
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case parked != nil:
			wait = poll
			return nil
		case lease != nil && lease.After(now):
			wait = lease.Sub(now)
			return nil
		case next.After(now):
			wait = next.Sub(now)
			return nil
		}
		top, ok, _ := f.state()
		if ok && top <= position {
			wait = poll // nothing to deliver: wait for the feed
			return nil
		}
		leased = true
		_, err = tx.Exec(ctx, `UPDATE bot_webhook SET lease_until = now() + make_interval(secs => $2) WHERE bot = $1`,
			bot, (timeout + 10*time.Second).Seconds())
		return err
	})
	if err != nil || !leased {
		return wait, err
	}
	release := func(q string, args ...any) error {
		_, err := s.cfg.DB.Exec(context.WithoutCancel(ctx), q, append([]any{bot}, args...)...)
		return err
	}
	events, _, err := s.events.read(ctx, bot, position, 1, nil)
	if err != nil || len(events) == 0 {
		if rerr := release(`UPDATE bot_webhook SET lease_until = NULL WHERE bot = $1`); rerr != nil && err == nil {
			err = rerr
		}
		return poll, err
	}
	ev := events[0]
	secret, err := s.cfg.Sealer.Open(purposeWebhook, webhookRow(bot), sealed)
	if err != nil {
		_ = release(`UPDATE bot_webhook SET lease_until = NULL WHERE bot = $1`)
		return poll, fmt.Errorf("open webhook secret of %q: %w", bot, err)
	}
	seq, _ := strconv.ParseInt(ev.ID, 10, 64)
	derr := d.post(ctx, url, secret, ev)
	if ctx.Err() != nil {
		_ = release(`UPDATE bot_webhook SET lease_until = NULL WHERE bot = $1`)
		return 0, nil
	}
	if derr == nil {
		s.cfg.Metrics.Webhooks.WithLabelValues("delivered").Inc()
		s.cfg.Metrics.Lag.WithLabelValues("webhook").Observe(s.cfg.Now().Sub(ev.DeliveredAt).Seconds())
		return 0, release(`UPDATE bot_webhook SET position = $2, attempts = 0, next_attempt_at = now(), lease_until = NULL,
			last_error = '', delivered = delivered + 1 WHERE bot = $1 AND position = $3`, seq, position)
	}
	attempts++
	result := "http_error"
	var he *httpStatusError
	if !errors.As(derr, &he) {
		result = "network_error"
	}
	s.cfg.Metrics.Webhooks.WithLabelValues(result).Inc()
	backoff := s.cfg.Settings.WebhookBackoff.D() << min(attempts-1, 30)
	backoff = min(backoff, s.cfg.Settings.WebhookMaxBackoff.D())
	parkNow := attempts >= s.cfg.Settings.WebhookAttempts
	log := s.log.Warn()
	if parkNow {
		s.cfg.Metrics.Webhooks.WithLabelValues("parked").Inc()
		log = s.log.Error()
	}
	log.Err(derr).Str("bot", bot).Str("event", ev.ID).Int("attempts", attempts).Bool("parked", parkNow).
		Dur("retry_in", backoff).Msg("Webhook delivery failed")
	msg := derr.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return backoff, release(`UPDATE bot_webhook SET attempts = $2, failures = failures + 1, last_error = $3,
		next_attempt_at = now() + make_interval(secs => $4), lease_until = NULL,
		parked_at = CASE WHEN $5 THEN now() ELSE NULL END WHERE bot = $1`, attempts, msg, backoff.Seconds(), parkNow)
}

type httpStatusError struct{ status int }

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("the webhook answered HTTP %d", e.status)
}

// post sends one event to the webhook, signed; nil means a 2xx answer.
func (d *dispatcher) post(ctx context.Context, url string, secret []byte, ev Event) error {
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-d.slots }()
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mls-appservice-webhook/1")
	req.Header.Set(EventIDHeader, ev.ID)
	req.Header.Set(SignatureHeader, Sign(secret, d.s.cfg.Now(), body))
	resp, err := d.s.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &httpStatusError{status: resp.StatusCode}
	}
	return nil
}
