package load

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Transaction is one homeserver transaction to put into the intake, as
// Synapse would send it, and how many deliveries its messages make.
type Transaction struct {
	Body       []byte
	Deliveries int
}

// IntakeOptions configure a run that feeds transactions to the intake.
type IntakeOptions struct {
	// URL is the service's appservice listener; HSToken the
	// registration's hs_token.
	URL, HSToken string
	// Transactions carry messages whose event ids all start with
	// EventPrefix.
	Transactions []Transaction
	EventPrefix  string
	// For the result line only: what the service holds.
	Puppets, Rooms, Members, Devices int
	// Concurrency bounds transactions in flight (1). Synapse sends an
	// application service one transaction at a time and waits for its
	// answer, so a room's events arrive in order; with more in flight a
	// later transaction can be stored first, and the service then sees a
	// sender's messages out of order, as if some were lost (holes in the
	// timeline, which it looks for on the homeserver).
	Concurrency int
	Service     Process
	// Database, if its PID is set, is the PostgreSQL server's postmaster,
	// whose process tree's CPU time is measured too.
	Database Process
	DB       *pgxpool.Pool
	// Compact and RestWait: as in SynapseOptions.
	Compact  bool
	RestWait time.Duration
	// Timeout bounds the wait for the last delivery (10 minutes).
	Timeout  time.Duration
	Progress io.Writer
}

// Intake puts the transactions into the service's intake as fast as it
// takes them and waits until every delivery is committed in PostgreSQL.
func Intake(ctx context.Context, o IntakeOptions) (*Result, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.DB == nil || o.EventPrefix == "" {
		return nil, errors.New("load: intake mode needs the service's database and the events' prefix")
	}
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "load-progress: "+format+"\n", args...)
		}
	}
	res := &Result{Mode: "intake", Puppets: o.Puppets, Rooms: o.Rooms, Members: o.Members, Devices: o.Devices}
	for _, t := range o.Transactions {
		res.Sent += t.Deliveries
	}
	cpu0, _ := o.Service.CPUSeconds()
	var db0 float64
	if o.Database.PID > 0 {
		var err error
		if db0, err = o.Database.TreeCPUSeconds(); err != nil {
			return nil, err
		}
	}
	entries0, err := logEntries(ctx, o.DB)
	if err != nil {
		return nil, err
	}
	txnBase := fmt.Sprintf("load-%d", time.Now().UnixNano())
	start := time.Now()
	err = parallel(ctx, o.Concurrency, len(o.Transactions), func(i int) error {
		return put(ctx, o, fmt.Sprintf("%s-%d", txnBase, i), o.Transactions[i].Body)
	})
	if err != nil {
		return nil, err
	}
	putSeconds := time.Since(start).Seconds()
	progress("%d transactions stored by the intake in %.1fs", len(o.Transactions), putSeconds)
	pattern := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(o.EventPrefix) + "%"
	deadline := time.Now().Add(o.Timeout)
	for {
		// While the service works, progress is read from the logs'
		// cursors (a row per puppet); the deliveries themselves are
		// counted only once the cursors say they could all be there.
		// Counting them at each poll scanned the whole delivery table
		// twice a second: 8 % of PostgreSQL's time in a 1,000-room run,
		// taken from the service being measured and counted in its CPU.
		entries, err := logEntries(ctx, o.DB)
		if err != nil {
			return nil, err
		}
		if entries-entries0 >= int64(res.Sent) || time.Now().After(deadline) {
			if err := o.DB.QueryRow(ctx, `SELECT count(*) FROM (`+deliveredMessages+`) d`,
				pattern).Scan(&res.Delivered); err != nil {
				return nil, fmt.Errorf("count deliveries: %w", err)
			}
			if res.Delivered >= res.Sent || time.Now().After(deadline) {
				break
			}
		}
		progress("deliveries durable %d/%d after %.0fs", min(entries-entries0, int64(res.Sent)), res.Sent, time.Since(start).Seconds())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	var dbSeconds float64
	if o.Database.PID > 0 {
		db1, err := o.Database.TreeCPUSeconds()
		if err != nil {
			return nil, err
		}
		dbSeconds = db1 - db0
	}
	// Latency: from the start of the feed to each delivery row
	// (created_at is its database transaction's time). Everything is fed
	// at once, so this is time in the service's queues, not a per-message
	// latency at a sustainable rate.
	rows, err := o.DB.Query(ctx, `SELECT min(created_at), max(created_at) FROM (`+deliveredMessages+`) d
		GROUP BY event_id`, pattern)
	if err != nil {
		return nil, fmt.Errorf("delivery times: %w", err)
	}
	var first, last time.Time
	var done []time.Time // when each message was durable for all its puppets
	_, err = pgx.ForEachRow(rows, []any{&first, &last}, func() error {
		res.Messages++
		done = append(done, last)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delivery times: %w", err)
	}
	var lat latencies
	rows, err = o.DB.Query(ctx, `SELECT created_at FROM (`+deliveredMessages+`) d`, pattern)
	if err != nil {
		return nil, fmt.Errorf("delivery times: %w", err)
	}
	var at, lastAt time.Time
	_, err = pgx.ForEachRow(rows, []any{&at}, func() error {
		// The same clock, PostgreSQL's and ours: a delivery before the
		// feed began is one this measures wrongly.
		if d := at.Sub(start); d < -time.Second {
			return fmt.Errorf("a message delivered at %v, %v before the feed began", at, -d)
		}
		lat = append(lat, at.Sub(start))
		if at.After(lastAt) {
			lastAt = at
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delivery times: %w", err)
	}
	res.Seconds = max(lastAt.Sub(start).Seconds(), putSeconds)
	if res.Seconds > 0 {
		res.MsgsPerS = float64(res.Messages) / res.Seconds
	}
	res.SteadyMsgsPerS = steadyRate(done)
	res.P50ms, res.P99ms = lat.percentile(0.5), lat.percentile(0.99)
	if res.Messages > 0 {
		res.DBCPUPer1k = dbSeconds / float64(res.Messages) * 1000
	}
	return res, finish(ctx, res, o.Service, o.DB, sizing{o.Compact, o.RestWait}, cpu0)
}

// put sends one transaction, retrying while the intake is busy.
func put(ctx context.Context, o IntakeOptions, txnID string, body []byte) error {
	url := strings.TrimSuffix(o.URL, "/") + "/_matrix/app/v1/transactions/" + txnID
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+o.HSToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				return nil
			case resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests:
				return fmt.Errorf("transaction %s: HTTP %d: %s", txnID, resp.StatusCode, msg)
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if attempt >= 100 {
			return fmt.Errorf("transaction %s: %w", txnID, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(min(attempt+1, 10)) * 50 * time.Millisecond):
		}
	}
}

// logEntries is how many entries the puppets' delivery logs hold in all,
// from their cursors: what a progress line can afford to read.
func logEntries(ctx context.Context, db *pgxpool.Pool) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, `SELECT coalesce(sum(last_seq), 0)::bigint FROM delivery_cursor`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count log entries: %w", err)
	}
	return n, nil
}

// deliveredMessages selects a row (event_id, created_at) per message
// whose event ID is LIKE $1 and puppet it was delivered to: a message is
// stored once in its room's log and each puppet's log holds a span that
// covers it (package groups, migration 0025), or, delivered before that,
// a row of the puppet's own. A message's time is its entry's, written in
// the transaction that gave it to its puppets; a span's is that of its
// first entry, and a span grows across transactions for an hour.
const deliveredMessages = `SELECT e.event_id, e.created_at FROM room_entry e
	JOIN delivery_span s ON s.room_no = e.room_no AND s.first_no <= e.no AND s.first_no + s.n > e.no
	WHERE e.event_id LIKE $1
	UNION ALL
	SELECT event_id, created_at FROM delivery WHERE kind = 'message' AND event_id LIKE $1`
