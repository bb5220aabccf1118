package database

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Side says whether a queue orders inbound work items or outgoing rows.
type Side string

const (
	Inbound  Side = "in"
	Outbound Side = "out"
)

// Item is one inbound work item: an element of a homeserver transaction
// (or work a handler enqueued) waiting on its queue.
type Item struct {
	Seq       int64
	Queue     string
	Kind      string
	TxnSeq    int64 // 0 when a handler, not a transaction, produced it
	RoomID    string
	EventID   string
	Payload   []byte
	Attempts  int
	LastError string
	CreatedAt time.Time
	ParkedAt  time.Time // zero unless parked
}

// Producer adds work inside one database transaction. The queues'
// pending counters are raised in Flush, all at once and in queue-name
// order, so that concurrent producers never wait on each other's queue
// rows in opposite orders (no deadlocks), and a producer that is rolled
// back leaves no counter behind.
type Producer struct {
	q      Querier
	queues map[string]*queueChange
}

type queueChange struct {
	side  Side
	delta int
	due   time.Time // zero: leave due_at alone
}

// NewProducer returns a producer writing through q.
func NewProducer(q Querier) *Producer {
	return &Producer{q: q, queues: map[string]*queueChange{}}
}

func (p *Producer) change(queue string, side Side) *queueChange {
	c := p.queues[queue]
	if c == nil {
		c = &queueChange{side: side}
		p.queues[queue] = c
	}
	return c
}

// AddItem appends it to its queue and returns its sequence number.
func (p *Producer) AddItem(ctx context.Context, it Item) (int64, error) {
	seqs, err := p.AddItems(ctx, []Item{it})
	if err != nil {
		return 0, err
	}
	return seqs[0], nil
}

// AddItems appends items, in order, each to its queue, in one statement
// (a transaction's hundred events are one round trip, not a hundred), and
// returns their sequence numbers.
func (p *Producer) AddItems(ctx context.Context, items []Item) ([]int64, error) {
	n := len(items)
	if n == 0 {
		return nil, nil
	}
	queues, kinds, payloads := make([]string, n), make([]string, n), make([][]byte, n)
	txns, rooms, events := make([]*int64, n), make([]*string, n), make([]*string, n)
	for i, it := range items {
		if it.Queue == "" || it.Kind == "" {
			return nil, fmt.Errorf("add work item: queue %q and kind %q must not be empty", it.Queue, it.Kind)
		}
		queues[i], kinds[i], payloads[i] = it.Queue, it.Kind, it.Payload
		txns[i], rooms[i], events[i] = nullableInt(it.TxnSeq), nullable(it.RoomID), nullable(it.EventID)
		if payloads[i] == nil {
			payloads[i] = []byte{} // NOT NULL: an empty payload, not a missing one
		}
	}
	// Rows are inserted, and take their seq, in the order of i.
	rows, err := p.q.Query(ctx, `INSERT INTO work_item (queue, kind, txn_seq, room_id, event_id, payload)
		SELECT q, k, t, r, e, b FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::bytea[])
			WITH ORDINALITY AS x(q, k, t, r, e, b, i) ORDER BY i
		RETURNING seq`, queues, kinds, txns, rooms, events, payloads)
	if err != nil {
		return nil, addItemsError(items, err)
	}
	seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, addItemsError(items, err)
	}
	if len(seqs) != n {
		return nil, fmt.Errorf("add %d work items: %d inserted", n, len(seqs))
	}
	slices.Sort(seqs) // RETURNING's order is not promised; the seqs' is
	for _, it := range items {
		p.change(it.Queue, Inbound).delta++
	}
	return seqs, nil
}

func addItemsError(items []Item, err error) error {
	if len(items) == 1 {
		return fmt.Errorf("add %s item to %s: %w", items[0].Kind, items[0].Queue, err)
	}
	return fmt.Errorf("add %d work items: %w", len(items), err)
}

// Merge takes over other's counter changes (a handler's producer whose
// savepoint was released into this transaction).
func (p *Producer) Merge(other *Producer) {
	for q, c := range other.queues {
		mine := p.change(q, c.side)
		mine.delta += c.delta
		if !c.due.IsZero() {
			mine.due = c.due
		}
	}
}

// finished records that n entries of queue are done or parked, and when
// the queue may next be tried.
func (p *Producer) finished(queue string, side Side, n int, due time.Time) {
	c := p.change(queue, side)
	c.delta -= n
	c.due = due
}

// Touch makes queue due at the given time (now, to have its head tried
// again at once).
func (p *Producer) Touch(queue string, side Side, due time.Time) {
	p.change(queue, side).due = due
}

// Flush creates missing queues and applies the counter changes, in queue
// order. Call it last before committing.
func (p *Producer) Flush(ctx context.Context) error {
	names := make([]string, 0, len(p.queues))
	for q := range p.queues {
		names = append(names, q)
	}
	slices.Sort(names)
	if p.onlyAdds() && len(names) > 1 {
		return p.flushAdds(ctx, names)
	}
	for _, q := range names {
		c := p.queues[q]
		// A queue that had nothing pending is due now; one in backoff
		// keeps its due time, unless the change sets one.
		_, err := p.q.Exec(ctx, `INSERT INTO work_queue AS w (queue, side, pending, due_at)
			VALUES ($1, $2, greatest($3, 0), coalesce($4, now()))
			ON CONFLICT (queue) DO UPDATE SET
				pending = w.pending + $3,
				due_at = CASE WHEN $4::timestamptz IS NOT NULL THEN $4
					WHEN w.pending = 0 THEN now() ELSE w.due_at END`,
			q, string(c.side), c.delta, nullableTime(c.due))
		if err != nil {
			return fmt.Errorf("update queue %s: %w", q, err)
		}
	}
	clear(p.queues)
	return nil
}

// onlyAdds reports whether every change only adds entries (as the
// splitter's do): no entry finished, no due time set.
func (p *Producer) onlyAdds() bool {
	for _, c := range p.queues {
		if c.delta < 0 || !c.due.IsZero() {
			return false
		}
	}
	return true
}

// flushAdds is Flush for changes that only add entries, in one statement
// (a transaction of a hundred events touches tens of queues; a statement
// each was the intake's second cost in PostgreSQL). Its rows go in the
// order of names, sorted, so that queues are locked in the same order as
// by Flush's statements one by one.
func (p *Producer) flushAdds(ctx context.Context, names []string) error {
	sides, deltas := make([]string, len(names)), make([]int64, len(names))
	for i, q := range names {
		c := p.queues[q]
		sides[i], deltas[i] = string(c.side), int64(c.delta)
	}
	_, err := p.q.Exec(ctx, `INSERT INTO work_queue AS w (queue, side, pending, due_at)
		SELECT q, s, d, now() FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS x(q, s, d, i)
		ORDER BY i
		ON CONFLICT (queue) DO UPDATE SET
			pending = w.pending + excluded.pending,
			due_at = CASE WHEN w.pending = 0 THEN now() ELSE w.due_at END`, names, sides, deltas)
	if err != nil {
		return fmt.Errorf("update %d queues (%s, ...): %w", len(names), names[0], err)
	}
	clear(p.queues)
	return nil
}

// ClaimQueue takes, for the rest of tx, the lock of one queue of side that
// has pending work and is due, and returns its name; "" if every such
// queue is held by another worker or none is due. Queues are offered in
// the order they became due, and a worker that leaves work in a queue
// makes it due again at the back of that order, so busy queues take turns.
func ClaimQueue(ctx context.Context, tx pgx.Tx, side Side) (string, error) {
	rows, err := tx.Query(ctx, `SELECT queue, lock_key FROM work_queue
		WHERE side = $1 AND pending > 0 AND due_at <= now() ORDER BY due_at LIMIT 16`, string(side))
	if err != nil {
		return "", fmt.Errorf("find due %s queues: %w", side, err)
	}
	type candidate struct {
		queue string
		key   int64
	}
	var cands []candidate
	var c candidate
	if _, err := pgx.ForEachRow(rows, []any{&c.queue, &c.key}, func() error { cands = append(cands, c); return nil }); err != nil {
		return "", fmt.Errorf("find due %s queues: %w", side, err)
	}
	for _, c := range cands {
		got, err := tryLock(ctx, tx, c.key)
		if err != nil {
			return "", fmt.Errorf("lock queue %s: %w", c.queue, err)
		}
		if !got {
			continue
		}
		// The candidates were read before the lock: the worker that held
		// the queue may have finished its work and committed in between.
		var ready bool
		if err := tx.QueryRow(ctx, `SELECT pending > 0 AND due_at <= now() FROM work_queue WHERE queue = $1`, c.queue).
			Scan(&ready); err != nil {
			return "", fmt.Errorf("read queue %s: %w", c.queue, err)
		}
		if ready {
			return c.queue, nil
		}
	}
	return "", nil
}

// LockQueue takes the lock of queue for the rest of tx if it is free,
// creating the queue if needed, and reports whether it got it. It takes no
// row lock, so producers adding to the queue never wait for it.
func LockQueue(ctx context.Context, tx pgx.Tx, queue string, side Side) (bool, error) {
	key, err := queueKey(ctx, tx, queue, side)
	if err != nil {
		return false, err
	}
	got, err := tryLock(ctx, tx, key)
	if err != nil {
		return false, fmt.Errorf("lock queue %s: %w", queue, err)
	}
	return got, nil
}

// queueKey returns queue's lock key, creating the queue if needed.
func queueKey(ctx context.Context, q Querier, queue string, side Side) (int64, error) {
	for range 2 {
		var key int64
		err := q.QueryRow(ctx, `SELECT lock_key FROM work_queue WHERE queue = $1`, queue).Scan(&key)
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("find queue %s: %w", queue, err)
		}
		// DO NOTHING, unlike DO UPDATE, locks no existing row; a row
		// another transaction inserted first is found by the next read.
		err = q.QueryRow(ctx, `INSERT INTO work_queue (queue, side) VALUES ($1, $2)
			ON CONFLICT (queue) DO NOTHING RETURNING lock_key`, queue, string(side)).Scan(&key)
		if err == nil {
			return key, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("create queue %s: %w", queue, err)
		}
	}
	return 0, fmt.Errorf("find queue %s: created and not found", queue)
}

// WaitQueue takes the lock of queue for the rest of tx, waiting while a
// worker holds it (for one batch), and creates the queue if needed. An
// API call that changes a room's state takes its queue's lock this way,
// so it is serialised with the room's work items.
func WaitQueue(ctx context.Context, tx pgx.Tx, queue string, side Side) error {
	key, err := queueKey(ctx, tx, queue, side)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key); err != nil {
		return fmt.Errorf("lock queue %s: %w", queue, err)
	}
	return nil
}

func tryLock(ctx context.Context, tx pgx.Tx, key int64) (bool, error) {
	var got bool
	err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, key).Scan(&got)
	return got, err
}

const itemColumns = `seq, queue, kind, coalesce(txn_seq, 0), coalesce(room_id, ''), coalesce(event_id, ''),
	payload, attempts, coalesce(last_error, ''), created_at, coalesce(parked_at, 'epoch'::timestamptz)`

func scanItem(row pgx.Row) (Item, error) {
	var it Item
	err := row.Scan(&it.Seq, &it.Queue, &it.Kind, &it.TxnSeq, &it.RoomID, &it.EventID, &it.Payload,
		&it.Attempts, &it.LastError, &it.CreatedAt, &it.ParkedAt)
	if it.ParkedAt.Equal(time.Unix(0, 0)) {
		it.ParkedAt = time.Time{}
	}
	return it, err
}

func collectItems(rows pgx.Rows, err error) ([]Item, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Item, error) { return scanItem(r) })
}

// planEach makes PostgreSQL plan a statement for its values each time it
// runs (pgx sends it as the unnamed statement), where a prepared
// statement's plan may be one made once for any values and kept. The
// queue's reads need it: work_item swings from empty to tens of thousands
// of rows of many queues faster than autovacuum analyzes it, and a plan
// kept from while it was nearly empty scans the whole table for each
// read (TestHeadItemsPlannedForTheirValues).
const planEach = pgx.QueryExecModeCacheDescribe

// HeadItems returns up to limit unparked items of queue in order. Call it
// with the queue's lock held.
func HeadItems(ctx context.Context, q Querier, queue string, limit int) ([]Item, error) {
	items, err := collectItems(q.Query(ctx, `SELECT `+itemColumns+` FROM work_item
		WHERE queue = $1 AND NOT parked ORDER BY seq LIMIT $2`, planEach, queue, limit))
	if err != nil {
		return nil, fmt.Errorf("read items of %s: %w", queue, err)
	}
	return items, nil
}

// LastItemAfter returns the kind of the last unparked item of queue after
// seq, and "" if there is none: whether more work waits behind the item
// being applied, and whether it ends with a given kind already.
func LastItemAfter(ctx context.Context, q Querier, queue string, seq int64) (string, error) {
	var kind string
	err := q.QueryRow(ctx, `SELECT kind FROM work_item WHERE queue = $1 AND seq > $2 AND NOT parked
		ORDER BY seq DESC LIMIT 1`, planEach, queue, seq).Scan(&kind)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the items of %s after %d: %w", queue, seq, err)
	}
	return kind, nil
}

// KindQueuedAfter reports whether an item of kind waits on queue after
// item seq.
func KindQueuedAfter(ctx context.Context, q Querier, queue string, seq int64, kind string) (bool, error) {
	var found bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM work_item WHERE queue = $1 AND seq > $2 AND NOT parked AND kind = $3)`,
		planEach, queue, seq, kind).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("look for %s items of %s after %d: %w", kind, queue, seq, err)
	}
	return found, nil
}

// KindWaiting reports whether an unparked item of kind waits on queue
// with no worker applying the queue's items, and if so holds the queue's
// lock for the rest of tx (as LockQueue), so that the item runs only
// after tx commits and sees what tx wrote: a producer that would add an
// item of the same kind can leave its work to the waiting one. A queue a
// worker holds reports false. The lock is taken only when an item is
// there, and the item looked for again once it is held, in a statement of
// its own: a worker that applied the item and let go of the queue in
// between has committed, and the second look no longer finds it. tx must
// not be applying the queue's items itself (items of its own batch that
// it already applied would count as waiting), and each queue held is an
// entry of PostgreSQL's shared lock table until tx ends: a caller bounds
// how many it asks for in one transaction.
func KindWaiting(ctx context.Context, tx Querier, queue string, side Side, kind string) (bool, error) {
	look := func() (bool, error) {
		var found bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM work_item WHERE queue = $1 AND NOT parked AND kind = $2)`,
			planEach, queue, kind).Scan(&found)
		if err != nil {
			return false, fmt.Errorf("look for waiting %s items of %s: %w", kind, queue, err)
		}
		return found, nil
	}
	if found, err := look(); err != nil || !found {
		return false, err
	}
	key, err := queueKey(ctx, tx, queue, side)
	if err != nil {
		return false, err
	}
	var got bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, key).Scan(&got); err != nil {
		return false, fmt.Errorf("lock queue %s: %w", queue, err)
	}
	if !got {
		return false, nil
	}
	return look()
}

// ItemsDone deletes applied items and lowers their queue's counter in p;
// parked counts items parked in this transaction. due is when the queue
// may next be tried.
func ItemsDone(ctx context.Context, q Querier, p *Producer, queue string, done []int64, parked int, due time.Time) error {
	if len(done) > 0 {
		if _, err := q.Exec(ctx, `DELETE FROM work_item WHERE seq = ANY($1)`, done); err != nil {
			return fmt.Errorf("delete applied items of %s: %w", queue, err)
		}
	}
	p.finished(queue, Inbound, len(done)+parked, due)
	return nil
}

// ParkItem sets an item aside with the reason it failed: it no longer
// holds back its queue, and stays until an operator retries or drops it.
func ParkItem(ctx context.Context, q Querier, seq int64, attempts int, reason string) error {
	_, err := q.Exec(ctx, `UPDATE work_item SET parked = true, parked_at = now(), attempts = $2, last_error = $3
		WHERE seq = $1`, seq, attempts, errorText(reason))
	if err != nil {
		return fmt.Errorf("park item %d: %w", seq, err)
	}
	return nil
}

// ItemFailed records a failed attempt at an item that stays at the head
// of its queue.
func ItemFailed(ctx context.Context, q Querier, seq int64, attempts int, reason string) error {
	_, err := q.Exec(ctx, `UPDATE work_item SET attempts = $2, last_error = $3 WHERE seq = $1`, seq, attempts, errorText(reason))
	if err != nil {
		return fmt.Errorf("record failure of item %d: %w", seq, err)
	}
	return nil
}

// DelayQueue makes queue due no earlier than due, outside any worker's
// transaction (after a rolled-back attempt).
func DelayQueue(ctx context.Context, q Querier, queue string, due time.Time) error {
	_, err := q.Exec(ctx, `UPDATE work_queue SET due_at = greatest(due_at, $2) WHERE queue = $1`, queue, due)
	if err != nil {
		return fmt.Errorf("delay queue %s: %w", queue, err)
	}
	return nil
}

// ParkedItems lists parked items, oldest first.
func ParkedItems(ctx context.Context, q Querier) ([]Item, error) {
	items, err := collectItems(q.Query(ctx, `SELECT `+itemColumns+` FROM work_item WHERE parked ORDER BY seq`))
	if err != nil {
		return nil, fmt.Errorf("list parked items: %w", err)
	}
	return items, nil
}

// ErrNotParked means no parked item has the given sequence number.
var ErrNotParked = errors.New("no parked item with that number")

// RetryParked puts a parked item back on its queue with a fresh attempt
// count. It goes to the head of its queue, since its seq is older than
// the items that went on while it was parked.
func RetryParked(ctx context.Context, db *DB, seq int64) (Item, error) {
	var it Item
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		it, err = scanItem(tx.QueryRow(ctx, `UPDATE work_item SET parked = false, parked_at = NULL, attempts = 0
			WHERE seq = $1 AND parked RETURNING `+itemColumns, seq))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("retry item %d: %w", seq, ErrNotParked)
		}
		if err != nil {
			return fmt.Errorf("retry item %d: %w", seq, err)
		}
		p := NewProducer(tx)
		p.change(it.Queue, Inbound).delta++
		return p.Flush(ctx)
	})
	return it, err
}

// DropParked deletes a parked item for good.
func DropParked(ctx context.Context, q Querier, seq int64) (Item, error) {
	it, err := scanItem(q.QueryRow(ctx, `DELETE FROM work_item WHERE seq = $1 AND parked RETURNING `+itemColumns, seq))
	if errors.Is(err, pgx.ErrNoRows) {
		return Item{}, fmt.Errorf("drop item %d: %w", seq, ErrNotParked)
	}
	if err != nil {
		return Item{}, fmt.Errorf("drop item %d: %w", seq, err)
	}
	return it, nil
}

// Backlog describes unfinished work, for readiness and metrics.
type Backlog struct {
	Transactions    int64     // stored, not yet split
	OldestTxn       time.Time // zero if none
	Items           int64     // inbound items waiting (parked excluded)
	OldestItem      time.Time
	Parked          int64
	Outgoing        int64 // outbox rows neither sent nor given up on
	OldestOutgoing  time.Time
	Timers          int64 // timers already due
	QueuesWithItems int64
}

// Oldest returns the age of the oldest unfinished inbound work (stored
// transaction or item) at now, or 0.
func (b Backlog) Oldest(now time.Time) time.Duration {
	var oldest time.Time
	for _, t := range []time.Time{b.OldestTxn, b.OldestItem} {
		if !t.IsZero() && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return now.Sub(oldest)
}

// ReadBacklog reads the backlog. Each part uses an index, so it is cheap
// enough for every readiness probe and metrics scrape.
func ReadBacklog(ctx context.Context, q Querier) (Backlog, error) {
	var b Backlog
	var oldestTxn, oldestItem, oldestOut *time.Time
	err := q.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM appservice_transaction WHERE processed_at IS NULL),
		(SELECT received_at FROM appservice_transaction WHERE processed_at IS NULL ORDER BY seq LIMIT 1),
		(SELECT coalesce(sum(pending), 0) FROM work_queue WHERE side = 'in'),
		(SELECT created_at FROM work_item WHERE NOT parked ORDER BY seq LIMIT 1),
		(SELECT count(*) FROM work_item WHERE parked),
		(SELECT coalesce(sum(pending), 0) FROM work_queue WHERE side = 'out'),
		(SELECT min(created_at) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL),
		(SELECT count(*) FROM timer WHERE due_at <= now()),
		(SELECT count(*) FROM work_queue WHERE side = 'in' AND pending > 0)`).
		Scan(&b.Transactions, &oldestTxn, &b.Items, &oldestItem, &b.Parked, &b.Outgoing, &oldestOut, &b.Timers, &b.QueuesWithItems)
	if err != nil {
		return Backlog{}, fmt.Errorf("read backlog: %w", err)
	}
	for _, p := range []struct {
		src *time.Time
		dst *time.Time
	}{{oldestTxn, &b.OldestTxn}, {oldestItem, &b.OldestItem}, {oldestOut, &b.OldestOutgoing}} {
		if p.src != nil {
			*p.dst = *p.src
		}
	}
	return b, nil
}

// RecountQueue sets queue's pending counter from its rows. Workers call it
// when a queue's counter says there is work but its rows show none, which
// only a hand edit of the rows can cause. The queue row is locked first,
// so that the count is taken after every producer that already raised the
// counter has committed; producers that raise it later add to the count.
func RecountQueue(ctx context.Context, tx pgx.Tx, queue string) (int, error) {
	var side string
	if err := tx.QueryRow(ctx, `SELECT side FROM work_queue WHERE queue = $1 FOR UPDATE`, queue).Scan(&side); err != nil {
		return 0, fmt.Errorf("recount queue %s: %w", queue, err)
	}
	count := `SELECT count(*) FROM work_item WHERE queue = $1 AND NOT parked`
	if Side(side) == Outbound {
		count = `SELECT count(*) FROM outbox WHERE queue = $1 AND sent_at IS NULL AND failed_at IS NULL`
	}
	var n int
	if err := tx.QueryRow(ctx, count, queue).Scan(&n); err != nil {
		return 0, fmt.Errorf("recount queue %s: %w", queue, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE work_queue SET pending = $2 WHERE queue = $1`, queue, n); err != nil {
		return 0, fmt.Errorf("recount queue %s: %w", queue, err)
	}
	return n, nil
}

func nullableInt(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

func nullableTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
