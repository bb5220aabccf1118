package groups

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/seal"
)

// A room's log holds each decrypted message, membership event and commit
// applied once (table room_entry, numbered per room); a puppet's log
// holds, for a run of them it was given, a span of its own sequence
// numbers that stands for them (delivery_span). Migrations 0025 and 0029
// say why. A span grows while the puppet's next entries are the room's
// next ones: a puppet in a quiet room, given one message at a time, has a
// span an hour rather than a row a message.

// spanGrowth is how long after its first message a span may still grow.
// Log retention deletes a span by its first message's time (logprune.go),
// so a span's later messages become unreadable at most this much earlier
// than the retention says, and are deleted with their own time.
const spanGrowth = time.Hour

const purposeRoomEntry seal.Purpose = "groups room entry"

func roomEntryRow(room id.RoomID, no int64) seal.Binding {
	return seal.Row("room_entry", string(room), strconv.FormatInt(no, 10))
}

// errRedelivered is deliverToRoom's refusal of a run of entries of which
// some were delivered before.
var errRedelivered = errors.New("entries of the run were delivered before")

// inRoomLog says whether entries of kind k go to the room's log (the same
// content for every puppet) rather than a row per puppet. An undecryptable
// notice does not: its event may yet be decrypted, and the room's log
// keeps one entry an event.
func inRoomLog(k Kind) bool { return k == KindMessage || k == KindMembership || k == KindMLSState }

var roomEntryColumns = []string{"room_no", "no", "event_id", "sender", "sender_device", "event_type", "content", "origin_ts", "kind"}

// deliverToRoom appends the entries ds of one room and one kind (that
// inRoomLog takes), in order, to the logs of users (sorted, distinct), in
// three round trips whatever their number: one advances the room's log by
// len(ds) and each puppet's cursor by as much; one writes the entries,
// each sealed once to (room, number); one writes or grows a span a puppet.
//
// A lone entry that the room's log has is a copy of one delivered before:
// nobody gets it again (the cursors go back; the room's log skips a
// number, which nothing reads as an entry) and it returns no puppets. In
// a run of several the copy fails the whole call with errRedelivered, and
// the caller delivers them one by one.
func (s *Service) deliverToRoom(ctx context.Context, w *inbound.Work, users []string, ds []Delivered, what string) ([]id.UserID, error) {
	room := ds[0].RoomID
	var roomNo, lastNo int64
	first := &pgx.QueuedQuery{SQL: `INSERT INTO room_log (room_id, last_no) VALUES ($1, $2)
		ON CONFLICT (room_id) DO UPDATE SET last_no = room_log.last_no + $2 RETURNING room_no, last_no`,
		Arguments: []any{string(room), len(ds)}}
	l, err := advance(ctx, w, users, len(ds), first, &roomNo, &lastNo)
	if err != nil {
		return nil, fmt.Errorf("deliver %s in %s: %w", what, room, err)
	}
	firstNo := lastNo - int64(len(ds)) + 1
	rows := make([][]any, len(ds))
	for i, d := range ds {
		no := firstNo + int64(i)
		sealed, err := s.cfg.Sealer.Seal(purposeRoomEntry, roomEntryRow(room, no), d.Content)
		if err != nil {
			return nil, err
		}
		rows[i] = []any{roomNo, no, string(d.EventID), string(d.Sender), string(d.SenderDevice), d.Type, sealed, d.OriginServerTS, string(d.Kind)}
	}
	if len(ds) == 1 {
		tag, err := w.Q.Exec(ctx, `INSERT INTO room_entry (room_no, no, event_id, sender, sender_device, event_type, content, origin_ts, kind)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id, room_no) DO NOTHING`, rows[0]...)
		if err != nil {
			return nil, fmt.Errorf("deliver %s: %w", what, err)
		}
		if tag.RowsAffected() == 0 {
			if err := back(ctx, w, users); err != nil {
				return nil, fmt.Errorf("deliver %s: cursors of %d puppets: %w", what, len(users), err)
			}
			return nil, nil
		}
	} else {
		// A run fails whole on a message delivered before, so its rows go
		// in plainly, by COPY; the unique key still refuses a copy,
		// failing the COPY and the run's savepoint.
		_, err := w.Q.CopyFrom(ctx, pgx.Identifier{"room_entry"}, roomEntryColumns, pgx.CopyFromRows(rows))
		if database.IsUniqueViolation(err) {
			return nil, fmt.Errorf("deliver %s: %w", what, errRedelivered)
		} else if err != nil {
			return nil, fmt.Errorf("deliver %s: %w", what, err)
		}
	}
	// A puppet whose log ends with a span that this run continues (its
	// last span, ending just before the run's numbers, of the same room
	// and the entries just before in the room's log, begun less than
	// spanGrowth ago) has that span grow; any other gets a new one.
	// Growing changes only n, which no index holds (migration 0030). The
	// cursor's lock, held since advance, keeps the span as it was read.
	// The whole stays one statement.
	if _, err := w.Q.Exec(ctx, `WITH x AS (SELECT x.no, x.last, l.first_seq FROM unnest($1::bigint[], $2::bigint[]) AS x (no, last)
			CROSS JOIN LATERAL (SELECT max(m.first_seq) AS first_seq FROM delivery_span m WHERE m.log_no = x.no) l),
		grown AS (UPDATE delivery_span s SET n = s.n + $3 FROM x
			WHERE s.log_no = x.no AND s.first_seq = x.first_seq AND s.first_seq + s.n = x.last - $3 + 1
			AND s.room_no = $4 AND s.first_no + s.n = $5 AND s.created_at > now() - $6::interval
			RETURNING s.log_no)
		INSERT INTO delivery_span (log_no, first_seq, n, room_no, first_no)
		SELECT no, last - $3 + 1, $3, $4, $5 FROM x WHERE NOT EXISTS (SELECT 1 FROM grown g WHERE g.log_no = x.no)`,
		l.no, l.last, len(ds), roomNo, firstNo, spanGrowth.String()); err != nil {
		return nil, fmt.Errorf("deliver %s to %d puppets: %w", what, len(users), err)
	}
	got := make([]id.UserID, len(users))
	for i, u := range users {
		got[i] = id.UserID(u)
	}
	w.Count(s.metrics.Delivered.WithLabelValues(string(ds[0].Kind)), float64(len(got)*len(ds)))
	return got, nil
}
