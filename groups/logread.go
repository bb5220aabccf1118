package groups

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"
)

// A puppet's log is read from two places, merged by sequence number: its
// own rows (table delivery: its devices' joins, undecryptable notices, and
// what was delivered before migrations 0025 and 0029) and its spans over
// room logs (delivery_span, standing for entries of room_entry: messages,
// membership events, commits' MLS state).

// span is a run of n of a puppet's sequence numbers, from first on, that
// stands for the n entries of a room's log from firstNo on.
type span struct {
	first, n        int64
	roomNo, firstNo int64
	room            id.RoomID
	at              time.Time
}

func (sp span) last() int64 { return sp.first + sp.n - 1 }

// maxRead bounds the entries one read returns.
const maxRead = 1000

// Log returns up to limit entries of puppet's log after seq, oldest first.
func (s *Service) Log(ctx context.Context, puppet id.UserID, after int64, limit int) ([]Delivered, error) {
	limit = readLimit(limit)
	logNo, ok, err := s.logNo(ctx, puppet)
	if err != nil || !ok {
		return nil, err
	}
	own, err := s.ownEntries(ctx, puppet, logNo, `seq > $2 ORDER BY seq LIMIT $3`, after, limit)
	if err != nil {
		return nil, err
	}
	// The spans that begin after it, and the one before them, which may
	// go on past it (merge skips it if not).
	spans, err := s.spans(ctx, puppet, `(SELECT `+spanColumns+` FROM delivery_span s JOIN room_log r USING (room_no)
			WHERE s.log_no = $1 AND s.first_seq <= $2 ORDER BY s.first_seq DESC LIMIT 1)
		UNION ALL
		(SELECT `+spanColumns+` FROM delivery_span s JOIN room_log r USING (room_no)
			WHERE s.log_no = $1 AND s.first_seq > $2 ORDER BY s.first_seq LIMIT $3)
		ORDER BY 1`, logNo, after, limit)
	if err != nil {
		return nil, err
	}
	return s.merge(ctx, puppet, own, spans, after+1, 1, limit)
}

// RoomLog returns up to limit entries of puppet's log in one room before
// seq (before <= 0: the newest), newest first: a room's history as
// delivered to the puppet, paginated backwards.
func (s *Service) RoomLog(ctx context.Context, puppet id.UserID, room id.RoomID, before int64, limit int) ([]Delivered, error) {
	limit = readLimit(limit)
	if before <= 0 {
		before = 1<<63 - 1
	}
	logNo, ok, err := s.logNo(ctx, puppet)
	if err != nil || !ok {
		return nil, err
	}
	own, err := s.ownEntries(ctx, puppet, logNo, `room_id = $4 AND seq < $2 ORDER BY seq DESC LIMIT $3`,
		before, limit, room)
	if err != nil {
		return nil, err
	}
	// The spans that begin before it: each has an entry before it, and
	// the newest may go on past it (merge skips what is not before).
	spans, err := s.spans(ctx, puppet, `SELECT `+spanColumns+` FROM delivery_span s JOIN room_log r USING (room_no)
		WHERE s.log_no = $1 AND r.room_id = $4 AND s.first_seq < $2 ORDER BY s.first_seq DESC LIMIT $3`,
		logNo, before, limit, string(room))
	if err != nil {
		return nil, err
	}
	return s.merge(ctx, puppet, own, spans, before-1, -1, limit)
}

// Delivery returns the entry of puppet's log for event (its message or
// membership event, or else any entry), if the puppet was given it.
func (s *Service) Delivery(ctx context.Context, puppet id.UserID, event id.EventID) (*Delivered, error) {
	logNo, ok, err := s.logNo(ctx, puppet)
	if err != nil || !ok {
		return nil, err
	}
	// Within a puppet and room, spans cover disjoint entries, so at most
	// one holds the event's; the newest spans are searched first.
	var (
		sp     span
		e      entryColumns
		sealed []byte
	)
	err = s.cfg.DB.QueryRow(ctx, `SELECT `+spanColumns+`, e.no, `+entrySelect+` FROM room_entry e JOIN room_log r USING (room_no)
		CROSS JOIN LATERAL (SELECT * FROM delivery_span s WHERE s.log_no = $1 AND s.room_no = e.room_no
			AND s.first_no <= e.no AND s.first_no + s.n > e.no ORDER BY s.first_seq DESC LIMIT 1) s
		WHERE e.event_id = $2 ORDER BY s.first_seq DESC LIMIT 1`, logNo, string(event)).
		Scan(&sp.first, &sp.n, &sp.roomNo, &sp.firstNo, &sp.room, &sp.at, &e.no,
			&e.EventID, &e.Sender, &e.SenderDevice, &e.Type, &sealed, &e.OriginServerTS, &e.DeliveredAt, &e.Kind)
	switch {
	case err == nil:
		d := Delivered{Puppet: puppet, Seq: sp.first + (e.no - sp.firstNo), RoomID: sp.room}
		if err := s.openEntry(&d, e, sealed); err != nil {
			return nil, fmt.Errorf("read log of %s: message %s: %w", puppet, event, err)
		}
		return &d, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("read log of %s: message %s: %w", puppet, event, err)
	}
	got, err := s.ownEntries(ctx, puppet, logNo, `event_id = $4 ORDER BY (kind = 'message') DESC, seq LIMIT $3 OFFSET $2`,
		0, 1, string(event))
	if err != nil || len(got) == 0 {
		return nil, err
	}
	return &got[0], nil
}

func readLimit(limit int) int {
	if limit <= 0 || limit > maxRead {
		return maxRead
	}
	return limit
}

// logNo returns the number of puppet's log (ok false: it has none yet).
func (s *Service) logNo(ctx context.Context, puppet id.UserID) (no int64, ok bool, err error) {
	err = s.cfg.DB.QueryRow(ctx, `SELECT log_no FROM delivery_cursor WHERE user_id = $1`, string(puppet)).Scan(&no)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read log of %s: %w", puppet, err)
	}
	return no, true, nil
}

// ownEntries reads the rows of the log logNo (puppet's) that meet cond, in
// which $1 is the log's number, $2 n, $3 limit and $4 on the values of
// extra.
func (s *Service) ownEntries(ctx context.Context, puppet id.UserID, logNo int64, cond string, n int64, limit int, extra ...any) ([]Delivered, error) {
	args := append([]any{logNo, n, limit}, extra...)
	rows, err := s.cfg.DB.Query(ctx, `SELECT seq, room_id, event_id, kind, sender, sender_device, event_type,
		content, origin_ts, created_at FROM delivery WHERE log_no = $1 AND `+cond, args...)
	if err != nil {
		return nil, fmt.Errorf("read log of %s: %w", puppet, err)
	}
	var out []Delivered
	var sealed []byte
	d := Delivered{Puppet: puppet}
	_, err = pgx.ForEachRow(rows, []any{&d.Seq, &d.RoomID, &d.EventID, &d.Kind, &d.Sender, &d.SenderDevice,
		&d.Type, &sealed, &d.OriginServerTS, &d.DeliveredAt}, func() error {
		content, err := s.cfg.Sealer.Open(purposeDelivery, deliveryRow(d.Puppet, d.Seq), sealed)
		if err != nil {
			return fmt.Errorf("entry %d: %w", d.Seq, err)
		}
		d.Content = content
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read log of %s: %w", puppet, err)
	}
	return out, nil
}

// spanColumns are the columns spans scans, of delivery_span s and
// room_log r.
const spanColumns = `s.first_seq, s.n, s.room_no, s.first_no, r.room_id, s.created_at`

// spans runs query, which selects spanColumns, for puppet's log.
func (s *Service) spans(ctx context.Context, puppet id.UserID, query string, args ...any) ([]span, error) {
	rows, err := s.cfg.DB.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read log of %s: spans: %w", puppet, err)
	}
	var out []span
	var sp span
	if _, err := pgx.ForEachRow(rows, []any{&sp.first, &sp.n, &sp.roomNo, &sp.firstNo, &sp.room, &sp.at}, func() error {
		if sp.n <= 0 {
			return fmt.Errorf("span beginning at %d has %d entries", sp.first, sp.n)
		}
		out = append(out, sp)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read log of %s: spans: %w", puppet, err)
	}
	return out, nil
}

// ref is a message of a read's result (out[at]) that a span stands for:
// entry entryNo of its room's log.
type ref struct {
	at      int
	room    id.RoomID
	roomNo  int64
	entryNo int64
}

// merge returns up to limit entries of puppet's log from seq from on, in
// the direction dir (1: upwards, -1: downwards), taken from own and
// spans, each already in that order and holding every entry of the log
// in the range read, and reads the spans' messages from their rooms' logs.
func (s *Service) merge(ctx context.Context, puppet id.UserID, own []Delivered, spans []span, from int64, dir int64, limit int) ([]Delivered, error) {
	var (
		out  []Delivered
		refs []ref
		i, j int
		pos  = from
	)
	for len(out) < limit {
		// The next seq the spans hold, in the direction read.
		for ; j < len(spans); j++ {
			sp := spans[j]
			if dir > 0 {
				pos = max(pos, sp.first)
				if pos <= sp.last() {
					break
				}
			} else {
				pos = min(pos, sp.last())
				if pos >= sp.first {
					break
				}
			}
		}
		inSpan := j < len(spans)
		if i < len(own) && (!inSpan || (own[i].Seq-pos)*dir < 0) {
			out = append(out, own[i])
			i++
			continue
		}
		if !inSpan {
			break
		}
		sp := spans[j]
		refs = append(refs, ref{at: len(out), room: sp.room, roomNo: sp.roomNo, entryNo: sp.firstNo + pos - sp.first})
		// DeliveredAt is the span's until its entry is read (openEntry):
		// dropPruned judges a missing entry by it. The kind is the entry's.
		out = append(out, Delivered{Puppet: puppet, Seq: pos, RoomID: sp.room, DeliveredAt: sp.at})
		pos += dir
	}
	if len(refs) == 0 {
		return out, nil
	}
	roomNos, entryNos := make([]int64, len(refs)), make([]int64, len(refs))
	for k, r := range refs {
		roomNos[k], entryNos[k] = r.roomNo, r.entryNo
	}
	rows, err := s.cfg.DB.Query(ctx, `SELECT x.k, `+entrySelect+`
		FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS x (room_no, no, k)
		JOIN room_entry e ON e.room_no = x.room_no AND e.no = x.no`, roomNos, entryNos)
	if err != nil {
		return nil, fmt.Errorf("read log of %s: messages: %w", puppet, err)
	}
	var (
		k      int64
		sealed []byte
		found  = make([]bool, len(refs))
		e      entryColumns
	)
	_, err = pgx.ForEachRow(rows, []any{&k, &e.EventID, &e.Sender, &e.SenderDevice, &e.Type, &sealed, &e.OriginServerTS, &e.DeliveredAt, &e.Kind}, func() error {
		if k < 1 || k > int64(len(refs)) {
			return fmt.Errorf("row %d of %d", k, len(refs))
		}
		r := refs[k-1]
		e.no = r.entryNo
		if err := s.openEntry(&out[r.at], e, sealed); err != nil {
			return err
		}
		found[k-1] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read log of %s: messages: %w", puppet, err)
	}
	return s.dropPruned(puppet, out, refs, found)
}

// dropPruned removes from out the messages whose entries were not found.
// Log retention deletes spans before the entries they stand for, but a
// read that took a span just before retention deleted it may find its
// entries gone: a message as old as the retention reads as gone. Any
// other missing entry is an error, not a short page.
func (s *Service) dropPruned(puppet id.UserID, out []Delivered, refs []ref, found []bool) ([]Delivered, error) {
	missing := 0
	for _, f := range found {
		if !f {
			missing++
		}
	}
	if missing == 0 {
		return out, nil
	}
	drop := map[int]bool{}
	for k, r := range refs {
		if found[k] {
			continue
		}
		if s.cfg.LogRetention <= 0 || !out[r.at].DeliveredAt.Before(s.now().Add(-s.cfg.LogRetention+logRetentionSlack)) {
			return nil, fmt.Errorf("read log of %s: %d of %d messages its spans name are missing from their rooms' logs", puppet, missing, len(refs))
		}
		drop[r.at] = true
	}
	kept := out[:0]
	for i, d := range out {
		if !drop[i] {
			kept = append(kept, d)
		}
	}
	return kept, nil
}

// entrySelect selects a room_entry's columns that a Delivered takes, as
// e: those of entryColumns, with the sealed content after the type.
const entrySelect = `e.event_id, e.sender, e.sender_device, e.event_type, e.content, e.origin_ts, e.created_at, e.kind`

// entryColumns are a room_entry's columns read for a Delivered, and its
// number in the room's log.
type entryColumns struct {
	no             int64
	EventID        id.EventID
	Sender         id.UserID
	SenderDevice   id.DeviceID
	Type           string
	OriginServerTS int64
	// DeliveredAt is when the entry was written, in the transaction that
	// gave it to its puppets: a span that grew holds entries of several.
	DeliveredAt time.Time
	Kind        Kind
}

// openEntry opens e's sealed content, sealed to d's room and e's number,
// into d and fills d's event fields from e.
func (s *Service) openEntry(d *Delivered, e entryColumns, sealed []byte) error {
	content, err := s.cfg.Sealer.Open(purposeRoomEntry, roomEntryRow(d.RoomID, e.no), sealed)
	if err != nil {
		return fmt.Errorf("entry %d of %s: %w", e.no, d.RoomID, err)
	}
	d.EventID, d.Sender, d.SenderDevice, d.Type, d.Content, d.OriginServerTS = e.EventID, e.Sender, e.SenderDevice, e.Type, content, e.OriginServerTS
	d.DeliveredAt, d.Kind = e.DeliveredAt, e.Kind
	return nil
}
