package botapi

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/groups"
)

// eventLog is each bot's log of events: its puppets' delivery logs merged
// into one sequence (doc.go, "Resume").
type eventLog struct {
	db     *database.DB
	groups Groups
	// batch bounds the entries copied by one fan-in.
	batch int
}

// fanIn copies the entries of the bot's puppets' logs that are not in the
// bot's log yet, numbering them after the bot's last number, and returns
// how many it copied and the bot's last number. It runs under the row
// lock of the bot's cursor, so numbers are given in commit order and
// every entry is copied once, whichever instance copies it.
func (l *eventLog) fanIn(ctx context.Context, bot string) (copied int, last int64, err error) {
	err = l.db.InTxRetry(ctx, func(tx pgx.Tx) error {
		copied = 0
		if _, err := tx.Exec(ctx, `INSERT INTO bot_event_cursor (bot) VALUES ($1) ON CONFLICT DO NOTHING`, bot); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT last_seq FROM bot_event_cursor WHERE bot = $1 FOR UPDATE`, bot).Scan(&last); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO bot_fanin (user_id, bot) SELECT user_id, bot FROM bot_puppet WHERE bot = $1
			ON CONFLICT DO NOTHING`, bot); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT user_id, last_seq FROM bot_fanin WHERE bot = $1`, bot)
		if err != nil {
			return err
		}
		after := map[id.UserID]int64{}
		var u id.UserID
		var s int64
		if _, err := pgx.ForEachRow(rows, []any{&u, &s}, func() error { after[u] = s; return nil }); err != nil {
			return err
		}
		refs, err := groups.LogAfter(ctx, tx, after, l.batch)
		if err != nil || len(refs) == 0 {
			return err
		}
		users := make([]string, len(refs))
		seqs := make([]int64, len(refs))
		times := make([]time.Time, len(refs))
		reached := map[id.UserID]int64{}
		for i, r := range refs {
			users[i], seqs[i], times[i] = string(r.Puppet), r.Seq, r.DeliveredAt
			reached[r.Puppet] = r.Seq
		}
		if _, err := tx.Exec(ctx, `INSERT INTO bot_event (bot, seq, user_id, puppet_seq, delivered_at)
			SELECT $1, $2 + n, u, s, t FROM unnest($3::text[], $4::bigint[], $5::timestamptz[]) WITH ORDINALITY AS x (u, s, t, n)`,
			bot, last, users, seqs, times); err != nil {
			return err
		}
		for u, s := range reached {
			if _, err := tx.Exec(ctx, `UPDATE bot_fanin SET last_seq = $2 WHERE user_id = $1`, u, s); err != nil {
				return err
			}
		}
		last += int64(len(refs))
		copied = len(refs)
		_, err = tx.Exec(ctx, `UPDATE bot_event_cursor SET last_seq = $2 WHERE bot = $1`, bot, last)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("fan in the events of bot %q: %w", bot, err)
	}
	return copied, last, nil
}

// read returns up to limit events of the bot's log after seq, of the
// given puppets only if puppets is not empty, and the last number it
// looked at (at least after), from which the next read goes on.
func (l *eventLog) read(ctx context.Context, bot string, after int64, limit int, puppets []id.UserID) ([]Event, int64, error) {
	var filter []string
	for _, p := range puppets {
		filter = append(filter, string(p))
	}
	// Read the top first: everything up to it is committed, so the window
	// below holds all of it. The window is bounded, so that a filter that
	// matches little does not make one read walk the whole log.
	var top int64
	if err := l.db.QueryRow(ctx, `SELECT coalesce((SELECT last_seq FROM bot_event_cursor WHERE bot = $1), 0)`, bot).Scan(&top); err != nil {
		return nil, after, fmt.Errorf("read the events of bot %q: %w", bot, err)
	}
	hi := min(after+int64(4*limit), top)
	if hi <= after {
		return nil, after, nil
	}
	rows, err := l.db.Query(ctx, `SELECT seq, user_id, puppet_seq FROM bot_event
		WHERE bot = $1 AND seq > $2 AND seq <= $3 AND ($4::text[] IS NULL OR user_id = ANY($4))
		ORDER BY seq`, bot, after, hi, filter)
	if err != nil {
		return nil, after, fmt.Errorf("read the events of bot %q: %w", bot, err)
	}
	type ref struct {
		seq    int64
		puppet id.UserID
		pseq   int64
	}
	var refs []ref
	var r ref
	if _, err := pgx.ForEachRow(rows, []any{&r.seq, &r.puppet, &r.pseq}, func() error {
		refs = append(refs, r)
		return nil
	}); err != nil {
		return nil, after, fmt.Errorf("read the events of bot %q: %w", bot, err)
	}
	scanned := hi
	if len(refs) > limit {
		refs = refs[:limit]
		scanned = refs[limit-1].seq
	}
	// Each puppet's entries in the window are consecutive in its log:
	// fetch them in one range per puppet.
	span := map[id.UserID][2]int64{}
	for _, r := range refs {
		s, ok := span[r.puppet]
		if !ok {
			s = [2]int64{r.pseq, r.pseq}
		}
		s[0], s[1] = min(s[0], r.pseq), max(s[1], r.pseq)
		span[r.puppet] = s
	}
	entries := map[id.UserID]map[int64]groups.Delivered{}
	for p, s := range span {
		got, err := l.groups.Log(ctx, p, s[0]-1, int(s[1]-s[0]+1))
		if err != nil {
			return nil, after, err
		}
		entries[p] = map[int64]groups.Delivered{}
		for _, d := range got {
			entries[p][d.Seq] = d
		}
	}
	out := make([]Event, 0, len(refs))
	for _, r := range refs {
		d, ok := entries[r.puppet][r.pseq]
		if !ok {
			return nil, after, fmt.Errorf("event %d of bot %q: entry %d of %s's log is missing", r.seq, bot, r.pseq, r.puppet)
		}
		e := eventOf(d)
		e.ID = strconv.FormatInt(r.seq, 10)
		out = append(out, e)
	}
	return out, scanned, nil
}
