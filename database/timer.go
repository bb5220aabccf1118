package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Timer is work due at a time (DESIGN 3.6). Kind selects the handler; Key
// names the timer among its kind (a room, a device), so that scheduling
// the same timer twice keeps one row.
type Timer struct {
	Kind    string
	Key     string
	Queue   string // if set, the timer runs holding this inbound queue's lock
	DueAt   time.Time
	Payload []byte
	// Attempts counts failed runs since the timer was last scheduled.
	Attempts  int
	LastError string
}

// Schedule says what ScheduleTimer does with a timer that already exists.
type Schedule int

const (
	// Replace sets the new due time and payload.
	Replace Schedule = iota
	// Earliest keeps whichever due time is earlier (a grace period that
	// must not be extended by a later event); the payload is replaced.
	Earliest
	// KeepExisting leaves an existing timer untouched (a safety-net timer
	// scheduled at every start-up).
	KeepExisting
)

// ScheduleTimer creates or updates a timer through q, which may be the
// transaction of the state change that calls for it.
func ScheduleTimer(ctx context.Context, q Querier, t Timer, mode Schedule) error {
	if t.Kind == "" || t.Key == "" {
		return fmt.Errorf("schedule timer: kind %q and key %q must not be empty", t.Kind, t.Key)
	}
	if t.Payload == nil {
		t.Payload = []byte{}
	}
	var sql string
	switch mode {
	case Replace:
		sql = `ON CONFLICT (kind, key) DO UPDATE SET due_at = excluded.due_at, payload = excluded.payload,
			queue = excluded.queue, attempts = 0, last_error = NULL`
	case Earliest:
		sql = `ON CONFLICT (kind, key) DO UPDATE SET due_at = least(timer.due_at, excluded.due_at),
			payload = excluded.payload, queue = excluded.queue`
	case KeepExisting:
		sql = `ON CONFLICT (kind, key) DO NOTHING`
	default:
		return fmt.Errorf("schedule timer %s/%s: unknown mode %d", t.Kind, t.Key, mode)
	}
	if t.Queue != "" {
		// The queue exists before the timer can be claimed, so that
		// claiming it only reads (queueKey).
		if _, err := q.Exec(ctx, `INSERT INTO work_queue (queue, side) VALUES ($1, 'in') ON CONFLICT DO NOTHING`, t.Queue); err != nil {
			return fmt.Errorf("schedule timer %s/%s: create queue %s: %w", t.Kind, t.Key, t.Queue, err)
		}
	}
	_, err := q.Exec(ctx, `INSERT INTO timer (kind, key, queue, due_at, payload) VALUES ($1, $2, $3, $4, $5) `+sql,
		t.Kind, t.Key, nullable(t.Queue), t.DueAt, t.Payload)
	if err != nil {
		return fmt.Errorf("schedule timer %s/%s: %w", t.Kind, t.Key, err)
	}
	return nil
}

// CancelTimer deletes a timer if it exists.
func CancelTimer(ctx context.Context, q Querier, kind, key string) error {
	if _, err := q.Exec(ctx, `DELETE FROM timer WHERE kind = $1 AND key = $2`, kind, key); err != nil {
		return fmt.Errorf("cancel timer %s/%s: %w", kind, key, err)
	}
	return nil
}

// ClaimTimer locks one due timer for the rest of tx, together with its
// queue's lock if it names a queue, and returns it; nil if no due timer is
// free. The row lock keeps other workers off the timer; a timer whose
// queue is busy is passed over until the queue is free.
func ClaimTimer(ctx context.Context, tx pgx.Tx) (*Timer, error) {
	rows, err := tx.Query(ctx, `SELECT kind, key FROM timer WHERE due_at <= now() ORDER BY due_at LIMIT 16`)
	if err != nil {
		return nil, fmt.Errorf("find due timers: %w", err)
	}
	type name struct{ kind, key string }
	var names []name
	var n name
	if _, err := pgx.ForEachRow(rows, []any{&n.kind, &n.key}, func() error { names = append(names, n); return nil }); err != nil {
		return nil, fmt.Errorf("find due timers: %w", err)
	}
	for _, n := range names {
		var t Timer
		var queue, lastError *string
		err := tx.QueryRow(ctx, `SELECT kind, key, queue, due_at, payload, attempts, last_error FROM timer
			WHERE kind = $1 AND key = $2 AND due_at <= now() FOR UPDATE SKIP LOCKED`, n.kind, n.key).
			Scan(&t.Kind, &t.Key, &queue, &t.DueAt, &t.Payload, &t.Attempts, &lastError)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("claim timer %s/%s: %w", n.kind, n.key, err)
		}
		if queue != nil {
			t.Queue = *queue
			got, err := LockQueue(ctx, tx, t.Queue, Inbound)
			if err != nil {
				return nil, err
			}
			if !got {
				continue
			}
		}
		if lastError != nil {
			t.LastError = *lastError
		}
		return &t, nil
	}
	return nil, nil
}

// FinishTimer ends a run of t: it deletes the timer, or moves it to next
// if next is not zero. A handler that rescheduled its own timer during the
// run (its due time changed) keeps that schedule.
func FinishTimer(ctx context.Context, q Querier, t *Timer, next time.Time) error {
	var err error
	if next.IsZero() {
		_, err = q.Exec(ctx, `DELETE FROM timer WHERE kind = $1 AND key = $2 AND due_at = $3`, t.Kind, t.Key, t.DueAt)
	} else {
		_, err = q.Exec(ctx, `UPDATE timer SET due_at = $4, attempts = 0, last_error = NULL
			WHERE kind = $1 AND key = $2 AND due_at = $3`, t.Kind, t.Key, t.DueAt, next)
	}
	if err != nil {
		return fmt.Errorf("finish timer %s/%s: %w", t.Kind, t.Key, err)
	}
	return nil
}

// TimerFailed records a failed run and moves the timer to retry.
func TimerFailed(ctx context.Context, q Querier, t *Timer, reason string, retry time.Time) error {
	_, err := q.Exec(ctx, `UPDATE timer SET attempts = attempts + 1, last_error = $3, due_at = $4
		WHERE kind = $1 AND key = $2`, t.Kind, t.Key, errorText(reason), retry)
	if err != nil {
		return fmt.Errorf("record failure of timer %s/%s: %w", t.Kind, t.Key, err)
	}
	return nil
}
