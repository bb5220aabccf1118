package database

import (
	"context"
	"fmt"
	"time"
)

// Retention deletes, in batches of at most batch rows per statement, what
// was kept only as a record (DESIGN 8): split transactions, recorded raw
// events, sent outbox rows, and membership events older than cutoff (but
// each room member's current one: membership at an older event is read
// with the recorded events, gone by now, and a room with members coming
// and going otherwise grows its history for ever), through DeleteOlder.
// It returns the rows deleted per table.
func Retention(ctx context.Context, q Querier, cutoff time.Time, batch int) (map[string]int64, error) {
	return DeleteOlder(ctx, q, []BatchDelete{
		{"appservice_transaction", `DELETE FROM appservice_transaction WHERE seq IN (
			SELECT seq FROM appservice_transaction WHERE processed_at < $1 LIMIT $2)`},
		{"inbound_event", `DELETE FROM inbound_event WHERE seq IN (
			SELECT seq FROM inbound_event WHERE recorded_at < $1 LIMIT $2)`},
		{"room_member_event", `DELETE FROM room_member_event WHERE event_id IN (
			SELECT event_id FROM room_member_event WHERE recorded_at < $1 AND NOT current LIMIT $2)`},
		{"device_list_change", `DELETE FROM device_list_change WHERE seq IN (
			SELECT seq FROM device_list_change WHERE recorded_at < $1 LIMIT $2)`},
		{"outbox", `DELETE FROM outbox WHERE seq IN (
			SELECT o.seq FROM outbox o WHERE coalesce(o.sent_at, o.failed_at) < $1
			AND NOT EXISTS (SELECT 1 FROM outbox_dependency w WHERE w.after_seq = o.seq) LIMIT $2)`},
	}, cutoff, batch)
}

// BatchDelete is a statement that deletes at most $2 rows of Table older
// than $1.
type BatchDelete struct {
	Table, SQL string
}

// DeleteOlder runs each of deletes, in order, until it deletes fewer
// than batch rows, and returns the rows deleted per table. Each batch is
// its own statement on q (the pool, for retention), so that a large
// backlog never holds one long transaction.
func DeleteOlder(ctx context.Context, q Querier, deletes []BatchDelete, cutoff time.Time, batch int) (map[string]int64, error) {
	deleted := map[string]int64{}
	for _, d := range deletes {
		for {
			if err := ctx.Err(); err != nil {
				return deleted, err
			}
			tag, err := q.Exec(ctx, d.SQL, cutoff, batch)
			if err != nil {
				return deleted, fmt.Errorf("retention of %s: %w", d.Table, err)
			}
			deleted[d.Table] += tag.RowsAffected()
			if tag.RowsAffected() < int64(batch) {
				break
			}
		}
	}
	return deleted, nil
}
