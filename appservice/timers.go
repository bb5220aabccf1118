package appservice

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// Timers runs due timers (DESIGN 3.6): rows with a due time, claimed like
// queue items, so a crash never loses a scheduled run. A timer that names
// a queue runs under that queue's lock, in order with its items. A failed
// run is retried with growing delays; timers are never parked, since
// their handlers (retention, top-ups, commits) are meant to run for ever.
type Timers struct {
	db       *database.DB
	handlers map[string]inbound.TimerHandler
	metrics  *Metrics
	log      zerolog.Logger
	timeout  time.Duration
	backoff  func(attempts int) time.Duration
}

// NewTimers returns a timer runner over the handlers by kind.
func NewTimers(db *database.DB, handlers map[string]inbound.TimerHandler, metrics *Metrics, timeout time.Duration,
	backoff func(attempts int) time.Duration, log zerolog.Logger) *Timers {
	return &Timers{db: db, handlers: handlers, metrics: metrics, log: log, timeout: timeout, backoff: backoff}
}

// Step runs one due timer, if any, and reports whether there was one.
func (t *Timers) Step(ctx context.Context) (bool, error) {
	var timer *database.Timer
	var work *inbound.Work
	err := t.db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		timer, err = database.ClaimTimer(ctx, tx)
		if err != nil || timer == nil {
			return err
		}
		h := t.handlers[timer.Kind]
		if h == nil {
			// A timer of a kind this binary does not know (written by a
			// newer one, or by hand): leave it for whoever knows it.
			t.log.Error().Str("timer", timer.Kind).Str("key", timer.Key).Msg("No handler for timer kind; retrying later")
			return database.TimerFailed(ctx, tx, timer, "no handler for this kind", time.Now().Add(t.backoff(timer.Attempts+1)))
		}
		p := database.NewProducer(tx)
		work = &inbound.Work{Q: tx, Out: p}
		next, err := t.run(ctx, h, work, *timer)
		if err != nil {
			return err
		}
		if err := database.FinishTimer(ctx, tx, timer, next); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	if timer == nil {
		return false, err
	}
	if err != nil {
		if ctx.Err() != nil {
			return true, nil
		}
		t.metrics.TimersFailed.WithLabelValues(timer.Kind).Inc()
		retry := time.Now().Add(t.backoff(timer.Attempts + 1))
		t.log.Error().Err(err).Str("timer", timer.Kind).Str("key", timer.Key).Time("retry_at", retry).Msg("Timer failed")
		if rerr := database.TimerFailed(context.WithoutCancel(ctx), t.db, timer, err.Error(), retry); rerr != nil {
			return true, fmt.Errorf("record timer failure: %w", rerr)
		}
		return true, nil
	}
	if work != nil {
		work.Committed()
	}
	t.metrics.TimersRun.WithLabelValues(timer.Kind).Inc()
	return true, nil
}

func (t *Timers) run(ctx context.Context, h inbound.TimerHandler, w *inbound.Work, timer database.Timer) (next time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("timer handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return h.Timer(ctx, w, timer)
}
