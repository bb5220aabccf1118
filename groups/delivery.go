package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/seal"
)

// Kind says what a delivered event is.
type Kind string

const (
	// KindMessage is a decrypted application message: Type and Content
	// are the event the sender encrypted.
	KindMessage Kind = "message"
	// KindMembership is an m.room.member event (not encrypted).
	KindMembership Kind = "membership"
	// KindMLSState is a change of the room's MLS state: Content says what
	// (a commit applied, told to every joined puppet; our device joined,
	// told to its puppet if joined and not told of the commit). A log
	// keeps one such entry an event.
	KindMLSState Kind = "mls_state"
	// KindUndecryptable is a message that named an epoch we never got:
	// Content says why.
	KindUndecryptable Kind = "undecryptable"
)

// Delivered is one entry of a puppet's log: what the puppet was given, in
// order. Seq increases per puppet in the order entries were committed, so
// a reader that remembers the last Seq it saw resumes exactly after it.
type Delivered struct {
	Puppet       id.UserID       `json:"puppet"`
	Seq          int64           `json:"seq"`
	RoomID       id.RoomID       `json:"room_id"`
	EventID      id.EventID      `json:"event_id"`
	Kind         Kind            `json:"kind"`
	Sender       id.UserID       `json:"sender"`
	SenderDevice id.DeviceID     `json:"sender_device,omitempty"`
	Type         string          `json:"type"`
	Content      json.RawMessage `json:"content"`
	// OriginServerTS is the event's timestamp in milliseconds.
	OriginServerTS int64     `json:"origin_server_ts"`
	DeliveredAt    time.Time `json:"delivered_at"`
}

const purposeDelivery seal.Purpose = "groups delivery"

func deliveryRow(puppet id.UserID, seq int64) seal.Binding {
	return seal.Row("delivery", string(puppet), strconv.FormatInt(seq, 10))
}

// deliver appends d to the log of each puppet in to, once per (puppet,
// event, kind): delivering the same event again is a no-op. It returns
// the puppets that had not had it.
func (s *Service) deliver(ctx context.Context, w *inbound.Work, to []id.UserID, d Delivered) ([]id.UserID, error) {
	return s.deliverAll(ctx, w, to, []Delivered{d})
}

// deliverAll appends the entries ds, in order, to the log of each puppet
// in to, once per (puppet, event, kind): delivering the same event again
// is a no-op. It returns the puppets that got an entry, sorted.
//
// Messages, membership events and MLS state go to the room's log, once
// (deliverToRoom); undecryptable notices are a row per puppet
// (deliverEach), one entry at a time. Either way the puppets' cursors
// advance in one round trip, locked in the order of their user IDs
// (advance), so that two transactions delivering to the same puppets
// never wait on each other in a cycle.
func (s *Service) deliverAll(ctx context.Context, w *inbound.Work, to []id.UserID, ds []Delivered) ([]id.UserID, error) {
	if len(to) == 0 || len(ds) == 0 {
		return nil, nil
	}
	what := fmt.Sprintf("%s (and %d after it)", ds[0].EventID, len(ds)-1)
	if len(ds) == 1 {
		what = string(ds[0].EventID)
	}
	users := userIDs(to)
	for _, d := range ds[1:] {
		if d.Kind != ds[0].Kind || d.RoomID != ds[0].RoomID {
			return nil, fmt.Errorf("deliver %s: a run holds entries of one kind and room, not %s in %s", what, d.Kind, d.RoomID)
		}
	}
	if inRoomLog(ds[0].Kind) {
		return s.deliverToRoom(ctx, w, users, ds, what)
	}
	if len(ds) > 1 {
		return nil, fmt.Errorf("deliver %s: %s entries go one at a time", what, ds[0].Kind)
	}
	return s.deliverEach(ctx, w, users, ds[0])
}

// userIDs returns the user IDs of to as strings, sorted and distinct:
// the order in which a delivery locks its puppets' cursors (advance).
func userIDs(to []id.UserID) []string {
	users := userStrings(to)
	slices.Sort(users)
	return slices.Compact(users)
}

// logs are the puppets' cursors as one delivery advanced them: for
// users[i], the log's number and its new last sequence number.
type logs struct {
	no   []int64
	last []int64
}

// advance moves the cursors of users (sorted, distinct) on by n each, in
// one round trip, and returns them; before them, in the same round trip,
// it runs first (nil: nothing), whose row the caller scans with into.
//
// Two statements do it for any number of puppets: one makes the cursors
// of puppets given their first entry, one locks all the cursors in the
// order of their user IDs and advances them. Two transactions delivering
// to the same puppets so lock them in the same order, and neither waits
// for the other but for one that locked before it. (A statement a cursor,
// as before, cost 10,000 statements an event in a room of 10,000 of our
// puppets; one upsert for all locked in no set order.)
func advance(ctx context.Context, w *inbound.Work, users []string, n int, first *pgx.QueuedQuery, into ...any) (logs, error) {
	var b pgx.Batch
	if first != nil {
		b.QueuedQueries = append(b.QueuedQueries, first)
	}
	b.Queue(`INSERT INTO delivery_cursor (user_id, last_seq) SELECT u, 0 FROM unnest($1::text[]) AS u
		WHERE NOT EXISTS (SELECT 1 FROM delivery_cursor c WHERE c.user_id = u) ORDER BY u
		ON CONFLICT (user_id) DO NOTHING`, users)
	b.Queue(`WITH locked AS MATERIALIZED (SELECT user_id FROM delivery_cursor WHERE user_id = ANY($1::text[])
			ORDER BY user_id FOR UPDATE)
		UPDATE delivery_cursor c SET last_seq = c.last_seq + $2 FROM locked l WHERE c.user_id = l.user_id
		RETURNING c.user_id, c.last_seq, c.log_no`, users, n)
	l := logs{no: make([]int64, len(users)), last: make([]int64, len(users))}
	br := w.Q.SendBatch(ctx, &b)
	defer br.Close()
	if first != nil {
		if err := br.QueryRow().Scan(into...); err != nil {
			return l, err
		}
	}
	if _, err := br.Exec(); err != nil {
		return l, fmt.Errorf("cursors of %d puppets: %w", len(users), err)
	}
	rows, err := br.Query()
	if err != nil {
		return l, fmt.Errorf("cursors of %d puppets: %w", len(users), err)
	}
	var (
		user      string
		last, no  int64
		advanced  int
		advancing = make([]bool, len(users))
	)
	if _, err := pgx.ForEachRow(rows, []any{&user, &last, &no}, func() error {
		i, ok := slices.BinarySearch(users, user)
		if !ok || advancing[i] {
			return fmt.Errorf("cursor of %s advanced unasked", user)
		}
		advancing[i], l.last[i], l.no[i] = true, last, no
		advanced++
		return nil
	}); err != nil {
		return l, fmt.Errorf("cursors of %d puppets: %w", len(users), err)
	}
	if advanced != len(users) {
		return l, fmt.Errorf("cursors of %d puppets: %d advanced", len(users), advanced)
	}
	return l, br.Close()
}

// back moves the cursors of users back by one: each was advanced for an
// entry it turned out to have, and this transaction still holds its row,
// so its log's numbers stay consecutive.
func back(ctx context.Context, w *inbound.Work, users []string) error {
	if len(users) == 0 {
		return nil
	}
	_, err := w.Q.Exec(ctx, `UPDATE delivery_cursor SET last_seq = last_seq - 1 WHERE user_id = ANY($1)`, users)
	return err
}

// deliverEach appends d to the log of each of users as a row of its own,
// sealed to (puppet, seq), in one statement that skips the puppets that
// had it (whose cursors go back).
//
// The entries that exist are not looked up first: a lookup by puppets and
// event is planned once per connection, and while the table grows from
// empty faster than autovacuum analyzes it, that plan is a sequential
// scan (15 ms a message at 54,000 rows in the load command's intake
// mode). The conflict on the unique key needs no plan.
func (s *Service) deliverEach(ctx context.Context, w *inbound.Work, users []string, d Delivered) ([]id.UserID, error) {
	l, err := advance(ctx, w, users, 1, nil)
	if err != nil {
		return nil, fmt.Errorf("deliver %s: %w", d.EventID, err)
	}
	n := len(users)
	var (
		nos, seqs = make([]int64, n), make([]int64, n)
		content   = make([][]byte, n)
	)
	for i, user := range users {
		sealed, err := s.cfg.Sealer.Seal(purposeDelivery, deliveryRow(id.UserID(user), l.last[i]), d.Content)
		if err != nil {
			return nil, err
		}
		nos[i], seqs[i], content[i] = l.no[i], l.last[i], sealed
	}
	rows, err := w.Q.Query(ctx, `INSERT INTO delivery (log_no, seq, room_id, event_id, kind, sender, sender_device,
		event_type, content, origin_ts)
		SELECT no, seq, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text, c, $9::bigint FROM unnest($1::bigint[], $2::bigint[], $10::bytea[]) AS x (no, seq, c)
		ON CONFLICT (log_no, event_id, kind) DO NOTHING RETURNING log_no`,
		nos, seqs, string(d.RoomID), string(d.EventID), string(d.Kind), string(d.Sender), string(d.SenderDevice),
		d.Type, d.OriginServerTS, content)
	if err != nil {
		return nil, fmt.Errorf("deliver %s to %d puppets: %w", d.EventID, n, err)
	}
	gotLogs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("deliver %s to %d puppets: %w", d.EventID, n, err)
	}
	slices.Sort(gotLogs) // looked up once a puppet: a large room's are thousands
	var got []id.UserID
	var had []string
	for i, u := range users {
		if _, ok := slices.BinarySearch(gotLogs, l.no[i]); ok {
			got = append(got, id.UserID(u))
		} else {
			had = append(had, u)
		}
	}
	if err := back(ctx, w, had); err != nil {
		return nil, fmt.Errorf("deliver %s: cursors of %d puppets that had it: %w", d.EventID, len(had), err)
	}
	w.Count(s.metrics.Delivered.WithLabelValues(string(d.Kind)), float64(len(got)))
	return got, nil
}

// LastSeq returns the last sequence number of puppet's log (0 if empty).
func (s *Service) LastSeq(ctx context.Context, puppet id.UserID) (int64, error) {
	var seq int64
	err := s.cfg.DB.QueryRow(ctx, `SELECT last_seq FROM delivery_cursor WHERE user_id = $1`, puppet).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read log position of %s: %w", puppet, err)
	}
	return seq, nil
}

// notifier wakes readers waiting for a puppet's log. It is a hint within
// this process (another instance's deliveries are found by polling).
type notifier struct {
	mu      sync.Mutex
	waiters map[id.UserID]chan struct{}
}

// Wait returns a channel that is closed at the next delivery to puppet in
// this process.
func (s *Service) Wait(puppet id.UserID) <-chan struct{} {
	n := &s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.waiters == nil {
		n.waiters = map[id.UserID]chan struct{}{}
	}
	ch := n.waiters[puppet]
	if ch == nil {
		ch = make(chan struct{})
		n.waiters[puppet] = ch
	}
	return ch
}

func (n *notifier) wake(puppets []id.UserID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range puppets {
		if ch := n.waiters[p]; ch != nil {
			close(ch)
			delete(n.waiters, p)
		}
	}
}
