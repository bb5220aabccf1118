package appservice

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// RetentionTimer is the timer kind of retention; its one timer has the key
// "all" and runs every RetentionInterval.
const RetentionTimer = "retention"

// RetentionInterval is how often retention runs.
const RetentionInterval = time.Hour

// Retention deletes split transactions and recorded events older than
// Keep (DESIGN 8), in batches, as a timer. It deletes through the pool,
// one batch per statement, not in the timer's transaction: a large
// backlog must not become one long transaction, and deleting an old row
// twice is harmless.
type Retention struct {
	DB      *database.DB
	Keep    time.Duration
	Batch   int
	Metrics *Metrics
	Log     zerolog.Logger
}

var _ inbound.TimerHandler = (*Retention)(nil)

// Timer runs retention once and schedules the next run.
func (r *Retention) Timer(ctx context.Context, _ *inbound.Work, _ database.Timer) (time.Time, error) {
	deleted, err := database.Retention(ctx, r.DB, time.Now().Add(-r.Keep), r.Batch)
	var total int64
	for table, n := range deleted {
		r.Metrics.RetentionDeleted.WithLabelValues(table).Add(float64(n))
		total += n
	}
	if err != nil {
		return time.Time{}, err
	}
	if total > 0 {
		r.Log.Info().Interface("deleted", deleted).Dur("older_than", r.Keep).Msg("Retention deleted old records")
	}
	return time.Now().Add(RetentionInterval), nil
}

// ScheduleRetention makes sure the retention timer exists; it is called at
// every start-up and keeps an existing schedule.
func ScheduleRetention(ctx context.Context, q database.Querier) error {
	return database.ScheduleTimer(ctx, q, database.Timer{Kind: RetentionTimer, Key: "all", DueAt: time.Now()},
		database.KeepExisting)
}
