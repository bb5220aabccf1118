package groups

import (
	"context"
	"time"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// Log retention deletes the entries of the puppets' logs older than
// Config.LogRetention (groups.log_retention; migration 0028 says why),
// hourly. A span goes by its time, which is its first message's (it grows
// for at most spanGrowth: roomlog.go), each room entry by its own, and
// every message of a span is at least as new as the span: an entry never
// goes before a span that stands for it, but a span may go up to
// spanGrowth before its last messages, which are then read by nobody
// until they go too. Spans go first, so a reader that found a span just
// before it went may find its messages gone as well: dropPruned drops
// them if they are that old. A reader resuming after an entry that is
// gone continues at the oldest entry kept: every read is "entries after
// seq N".

const (
	// timerLogRetention (one timer, key "all") runs log retention.
	timerLogRetention = "dmls_log_retention"
	// logRetentionInterval is the time between two runs.
	logRetentionInterval = time.Hour
	// logRetentionSlack allows for the clocks of this process and
	// PostgreSQL's (which stamps created_at) to differ: a message whose
	// entry is missing counts as deleted by retention only if it is older
	// than the retention less this much (dropPruned).
	logRetentionSlack = time.Minute
)

// logTables are the deletes of log retention. Spans go before the
// entries they stand for.
var logTables = []database.BatchDelete{
	{Table: "delivery_span", SQL: `DELETE FROM delivery_span WHERE (log_no, first_seq) IN (
		SELECT log_no, first_seq FROM delivery_span WHERE created_at < $1 LIMIT $2)`},
	{Table: "room_entry", SQL: `DELETE FROM room_entry WHERE (room_no, no) IN (
		SELECT room_no, no FROM room_entry WHERE created_at < $1 LIMIT $2)`},
	{Table: "delivery", SQL: `DELETE FROM delivery WHERE (log_no, seq) IN (
		SELECT log_no, seq FROM delivery WHERE created_at < $1 LIMIT $2)`},
}

type logRetentionTimer struct{ s *Service }

// Timer deletes what is older than the retention, one batch per
// statement through the pool rather than in the timer's transaction (a
// backlog must not become one long transaction; deleting an entry twice
// is harmless), and schedules the next run.
func (t logRetentionTimer) Timer(ctx context.Context, _ *inbound.Work, _ database.Timer) (time.Time, error) {
	s := t.s
	next := s.now().Add(logRetentionInterval)
	if s.cfg.LogRetention <= 0 {
		return next, nil
	}
	deleted, err := s.pruneLogs(ctx, s.now().Add(-s.cfg.LogRetention))
	var total int64
	for table, n := range deleted {
		s.metrics.LogPruned.WithLabelValues(table).Add(float64(n))
		total += n
	}
	if err != nil {
		return time.Time{}, err
	}
	if total > 0 {
		s.cfg.Log.Info().Interface("deleted", deleted).Dur("older_than", s.cfg.LogRetention).Msg("Log retention deleted old entries")
	}
	return next, nil
}

// pruneLogs deletes the log entries older than cutoff and returns how
// many rows of each table went.
func (s *Service) pruneLogs(ctx context.Context, cutoff time.Time) (map[string]int64, error) {
	batch := s.cfg.LogBatch
	if batch <= 0 {
		batch = 1000
	}
	return database.DeleteOlder(ctx, s.cfg.DB, logTables, cutoff, batch)
}
