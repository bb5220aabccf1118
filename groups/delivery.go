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

	"github.com/mls-appservice/mls-appservice/database"
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
	// told to its puppet if joined). A log keeps one such entry an event.
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

// deliveryColumns are the columns deliverAll writes, in its order.
var deliveryColumns = []string{"log_no", "seq", "room_id", "event_id", "kind", "sender", "sender_device", "event_type", "content", "origin_ts"}

// errRedelivered is deliverAll's refusal of a run of entries of which
// some were delivered before.
var errRedelivered = errors.New("entries of the run were delivered before")

// deliverAll appends the entries ds, in order, to the log of each puppet
// in to, in two round trips whatever their number (it took three a
// puppet and entry): one batch of statements advances the puppets'
// cursors by len(ds), one each, in sorted order so that two transactions
// delivering to the same puppets lock their cursors in one order; one
// statement writes every entry, each sealed to its own (puppet, seq),
// skipping those that exist. It returns the puppets that got an entry.
//
// A lone entry that a puppet had is skipped and the puppet's cursor goes
// back by one (this transaction holds its row), so that a log's numbers
// stay consecutive. In a run of several entries the skipped one would
// leave a hole in the numbers of the later ones, which are sealed to
// them: the whole call fails with errRedelivered instead, and the caller
// delivers one by one.
//
// The entries that exist are not looked up first: a lookup by puppets and
// event is planned once per connection, and while the table grows from
// empty faster than autovacuum analyzes it, that plan is a sequential
// scan (15 ms a message at 54,000 rows in the load command's intake
// mode). The conflict on the unique key needs no plan.
func (s *Service) deliverAll(ctx context.Context, w *inbound.Work, to []id.UserID, ds []Delivered) ([]id.UserID, error) {
	if len(to) == 0 || len(ds) == 0 {
		return nil, nil
	}
	what := fmt.Sprintf("%s (and %d after it)", ds[0].EventID, len(ds)-1)
	if len(ds) == 1 {
		what = string(ds[0].EventID)
	}
	users := make([]string, len(to))
	for i, u := range to {
		users[i] = string(u)
	}
	slices.Sort(users)
	users = slices.Compact(users)
	// The cursors advance in one round trip, one statement each, in
	// order. (One multi-row INSERT ... ON CONFLICT for all of them waited
	// on other transactions far more often.)
	var b pgx.Batch
	for _, user := range users {
		b.Queue(`INSERT INTO delivery_cursor (user_id, last_seq) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET last_seq = delivery_cursor.last_seq + $2 RETURNING last_seq, log_no`,
			user, len(ds))
	}
	last, logs := make([]int64, len(users)), make([]int64, len(users))
	br := w.Q.SendBatch(ctx, &b)
	for i, user := range users {
		if err := br.QueryRow().Scan(&last[i], &logs[i]); err != nil {
			br.Close()
			return nil, fmt.Errorf("deliver %s to %s: %w", what, user, err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, fmt.Errorf("deliver %s: %w", what, err)
	}
	n := len(users) * len(ds)
	var (
		rooms, events, kinds, senders, devices, types = make([]string, 0, n), make([]string, 0, n),
			make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		nos, seqs, origins = make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
		content            = make([][]byte, 0, n)
	)
	for i, user := range users {
		for j, d := range ds {
			seq := last[i] - int64(len(ds)-1-j)
			sealed, err := s.cfg.Sealer.Seal(purposeDelivery, deliveryRow(id.UserID(user), seq), d.Content)
			if err != nil {
				return nil, err
			}
			nos, seqs, content = append(nos, logs[i]), append(seqs, seq), append(content, sealed)
			rooms, events, kinds = append(rooms, string(d.RoomID)), append(events, string(d.EventID)), append(kinds, string(d.Kind))
			senders, devices = append(senders, string(d.Sender)), append(devices, string(d.SenderDevice))
			types, origins = append(types, d.Type), append(origins, d.OriginServerTS)
		}
	}
	if len(ds) > 1 {
		// A run fails whole on an entry a puppet had, so its rows go in
		// plainly (ON CONFLICT's speculative insertion cost a quarter
		// more), and by COPY: as costly as INSERT ... unnest in
		// PostgreSQL (half its time in the load command's intake mode,
		// three indexes a row), but 5 % less a message at 9 puppets
		// (BenchmarkDecryptRun). The unique key still refuses a
		// duplicate, failing the COPY and the run's savepoint.
		_, err := w.Q.CopyFrom(ctx, pgx.Identifier{"delivery"}, deliveryColumns, pgx.CopyFromSlice(len(nos), func(i int) ([]any, error) {
			return []any{nos[i], seqs[i], rooms[i], events[i], kinds[i], senders[i], devices[i], types[i], content[i], origins[i]}, nil
		}))
		if database.IsUniqueViolation(err) {
			return nil, fmt.Errorf("deliver %s: %w", what, errRedelivered)
		} else if err != nil {
			return nil, fmt.Errorf("deliver %s to %d puppets: %w", what, len(users), err)
		}
		got := make([]id.UserID, len(users))
		for i, u := range users {
			got[i] = id.UserID(u)
		}
		for _, d := range ds {
			counted(w, s.metrics.Delivered.WithLabelValues(string(d.Kind)), float64(len(got)))
		}
		return got, nil // sorted, as users
	}
	rows, err := w.Q.Query(ctx, `INSERT INTO delivery (log_no, seq, room_id, event_id, kind, sender, sender_device,
		event_type, content, origin_ts)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::bytea[], $10::bigint[])
		ON CONFLICT (log_no, event_id, kind) DO NOTHING RETURNING log_no`,
		nos, seqs, rooms, events, kinds, senders, devices, types, content, origins)
	if err != nil {
		return nil, fmt.Errorf("deliver %s to %d puppets: %w", what, len(users), err)
	}
	gotLogs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("deliver %s to %d puppets: %w", what, len(users), err)
	}
	slices.Sort(gotLogs) // looked up once a puppet: a large room's are thousands
	var got []id.UserID
	var had []string
	for i, u := range users {
		if _, ok := slices.BinarySearch(gotLogs, logs[i]); ok {
			got = append(got, id.UserID(u))
		} else {
			had = append(had, u)
		}
	}
	if len(had) > 0 {
		if _, err := w.Q.Exec(ctx, `UPDATE delivery_cursor SET last_seq = last_seq - 1 WHERE user_id = ANY($1)`, had); err != nil {
			return nil, fmt.Errorf("deliver %s: cursors of %d puppets that had it: %w", what, len(had), err)
		}
	}
	counted(w, s.metrics.Delivered.WithLabelValues(string(ds[0].Kind)), float64(len(got)))
	return got, nil // sorted, as users
}

// Log returns up to limit entries of puppet's log after seq, oldest first.
func (s *Service) Log(ctx context.Context, puppet id.UserID, after int64, limit int) ([]Delivered, error) {
	return s.readLog(ctx, `seq > $2 ORDER BY seq LIMIT $3`, puppet, after, limit)
}

// RoomLog returns up to limit entries of puppet's log in one room before
// seq (before <= 0: the newest), newest first: a room's history as
// delivered to the puppet, paginated backwards.
func (s *Service) RoomLog(ctx context.Context, puppet id.UserID, room id.RoomID, before int64, limit int) ([]Delivered, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	return s.readLog(ctx, `room_id = $4 AND seq < $2 ORDER BY seq DESC LIMIT $3`,
		puppet, before, limit, room)
}

// Delivery returns the entry of puppet's log for event (its message, or
// else any entry), if the puppet was given it.
func (s *Service) Delivery(ctx context.Context, puppet id.UserID, event id.EventID) (*Delivered, error) {
	got, err := s.readLog(ctx, `event_id = $4 ORDER BY (kind = 'message') DESC, seq LIMIT $3 OFFSET $2`,
		puppet, 0, 1, event)
	if err != nil || len(got) == 0 {
		return nil, err
	}
	return &got[0], nil
}

// readLog reads puppet's entries that meet cond, in which $1 is the
// puppet, $2 n, $3 limit and $4 on the values of extra.
func (s *Service) readLog(ctx context.Context, cond string, puppet id.UserID, n int64, limit int, extra ...any) ([]Delivered, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	args := append([]any{puppet, n, limit}, extra...)
	rows, err := s.cfg.DB.Query(ctx, `SELECT seq, room_id, event_id, kind, sender, sender_device, event_type,
		content, origin_ts, created_at FROM delivery
		WHERE log_no = (SELECT log_no FROM delivery_cursor WHERE user_id = $1) AND `+cond, args...)
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
