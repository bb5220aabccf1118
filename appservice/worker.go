package appservice

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// WorkerConfig holds what the workers need.
type WorkerConfig struct {
	DB       *database.DB
	Handlers inbound.Handlers
	Metrics  *Metrics
	Log      zerolog.Logger
	// BatchSize is the most items of one queue applied in one database
	// transaction.
	BatchSize int
	// MaxAttempts is how often an item may fail before it is parked.
	MaxAttempts int
	// RetryBackoff is the delay after an item's first failure; it
	// doubles with each further failure up to MaxRetryBackoff.
	RetryBackoff, MaxRetryBackoff time.Duration
	// ItemTimeout bounds one handler call.
	ItemTimeout time.Duration
}

// Worker applies work items (DESIGN 3.3): it claims one due queue, applies
// up to BatchSize of its items in order, each in a savepoint, and commits
// them together with their removal from the queue. Any number of workers,
// in any number of instances, run side by side; a queue is held by one at
// a time.
//
// An item whose handler fails is rolled back to its savepoint and stays at
// the head of its queue, which is retried after a backoff; the items
// already applied in the batch are committed. After MaxAttempts failures
// (or at once, for an error wrapping inbound.ErrPermanent) the item is
// parked: set aside with its error, counted and logged, until an operator
// retries or drops it. The items after it in its queue then go on. For a
// room this means its later events are applied without the parked one,
// which is what a member that missed an event does anyway: the MLS state
// recovers missing commits by following commit_event links (DESIGN 5),
// while a room held back for ever would stop every member's messages.
type Worker struct {
	cfg WorkerConfig
}

// NewWorker returns a worker over cfg.
func NewWorker(cfg WorkerConfig) *Worker {
	cfg.BatchSize = max(cfg.BatchSize, 1)
	cfg.MaxAttempts = max(cfg.MaxAttempts, 1)
	return &Worker{cfg: cfg}
}

// Step applies the head items of one due queue, if any, and reports
// whether there was one.
func (w *Worker) Step(ctx context.Context) (bool, error) {
	var queue string
	var head database.Item
	// What the batch did is announced (handlers' AfterCommit) and
	// counted only once it committed: a batch whose commit fails did
	// nothing, and its items are tried again.
	var committed []func()
	recount := false
	err := w.cfg.DB.InTx(ctx, func(tx pgx.Tx) error {
		committed = committed[:0]
		var err error
		queue, err = database.ClaimQueue(ctx, tx, database.Inbound)
		if err != nil || queue == "" {
			return err
		}
		items, err := database.HeadItems(ctx, tx, queue, w.cfg.BatchSize)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			recount = true
			return nil
		}
		head = items[0]
		return w.applyBatch(ctx, tx, queue, items, &committed)
	})
	if err == nil {
		for _, f := range committed {
			f()
		}
	}
	if queue == "" {
		return false, err
	}
	if err == nil && recount {
		err = w.cfg.DB.InTx(ctx, func(tx pgx.Tx) error {
			n, err := database.RecountQueue(ctx, tx, queue)
			if err == nil {
				w.cfg.Log.Warn().Str("queue", queue).Int("pending", n).Msg("Queue counter disagreed with its items; recounted")
			}
			return err
		})
	}
	if err != nil && ctx.Err() == nil && head.Seq != 0 {
		w.batchFailed(ctx, head, err)
	}
	return true, err
}

// batchFailed records a failure of the whole batch transaction (not of
// one handler: those are rolled back to their savepoint and recorded in
// the batch). The head item takes the blame, so that an item that fails
// the commit itself is still parked in the end; a conflict with another
// transaction (serialization failure, deadlock) blames nobody.
func (w *Worker) batchFailed(ctx context.Context, head database.Item, cause error) {
	ctx = context.WithoutCancel(ctx)
	log := w.itemLog(head)
	if database.IsConflict(cause) {
		log.Warn().Err(cause).Msg("Work batch lost a conflict with another transaction; will retry")
		return
	}
	attempts := head.Attempts + 1
	park := attempts >= w.cfg.MaxAttempts
	err := w.cfg.DB.InTx(ctx, func(tx pgx.Tx) error {
		if park {
			if err := database.ParkItem(ctx, tx, head.Seq, attempts, cause.Error()); err != nil {
				return err
			}
			p := database.NewProducer(tx)
			if err := database.ItemsDone(ctx, tx, p, head.Queue, nil, 1, time.Now()); err != nil {
				return err
			}
			return p.Flush(ctx)
		}
		if err := database.ItemFailed(ctx, tx, head.Seq, attempts, cause.Error()); err != nil {
			return err
		}
		return database.DelayQueue(ctx, tx, head.Queue, time.Now().Add(w.backoff(attempts)))
	})
	switch {
	case err != nil:
		log.Error().Err(err).Msg("Recording a failed work batch failed")
	case park:
		log.Error().Err(cause).Int("attempts", attempts).Msg("Work item parked: its batch failed to commit too often")
		w.cfg.Metrics.ItemsParked.WithLabelValues(head.Kind).Inc()
	}
}

func (w *Worker) applyBatch(ctx context.Context, tx pgx.Tx, queue string, items []database.Item, committed *[]func()) error {
	p := database.NewProducer(tx)
	var done []int64
	parked := 0
	due := time.Now()
	singly := 0 // items[:singly] are applied one by one: their run was declined
	for i := 0; i < len(items); i++ {
		if i >= singly {
			if n, evs := w.runAt(items[i:]); n > 1 {
				start := time.Now()
				work, ok := w.applyRun(ctx, tx, p, items[i:i+n], evs)
				if ok {
					*committed = append(*committed, work.Committed)
					for _, it := range items[i : i+n] {
						done = append(done, it.Seq)
						*committed = append(*committed, w.processed(it, time.Since(start)/time.Duration(n)))
					}
					i += n - 1
					continue
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				singly = i + n
			}
		}
		it := items[i]
		start := time.Now()
		work, err := w.applyItem(ctx, tx, p, it)
		if err == nil {
			*committed = append(*committed, work.Committed, w.processed(it, time.Since(start)))
			done = append(done, it.Seq)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		attempts := it.Attempts + 1
		log := w.itemLog(it).With().Int("attempts", attempts).Logger()
		w.cfg.Metrics.ItemsFailed.WithLabelValues(it.Kind).Inc()
		if errors.Is(err, inbound.ErrPermanent) || attempts >= w.cfg.MaxAttempts {
			log.Error().Err(err).Msg("Work item parked; later items of its queue go on (mls-appservice queue list)")
			*committed = append(*committed, w.cfg.Metrics.ItemsParked.WithLabelValues(it.Kind).Inc)
			if err := database.ParkItem(ctx, tx, it.Seq, attempts, err.Error()); err != nil {
				return err
			}
			parked++
			continue
		}
		due = time.Now().Add(w.backoff(attempts))
		log.Warn().Err(err).Time("retry_at", due).Msg("Work item failed; its queue waits and retries it")
		if err := database.ItemFailed(ctx, tx, it.Seq, attempts, err.Error()); err != nil {
			return err
		}
		break
	}
	if err := database.ItemsDone(ctx, tx, p, queue, done, parked, due); err != nil {
		return err
	}
	return p.Flush(ctx)
}

// processed returns the counting of an item applied in took, for when
// its batch commits.
func (w *Worker) processed(it database.Item, took time.Duration) func() {
	return func() {
		w.cfg.Metrics.ItemsProcessed.WithLabelValues(it.Kind).Inc()
		w.cfg.Metrics.ItemSeconds.WithLabelValues(it.Kind).Observe(took.Seconds())
		w.cfg.Metrics.ItemDelaySeconds.Observe(time.Since(it.CreatedAt).Seconds())
	}
}

// runAt returns how many of the items, from the first, make a run
// (inbound.RoomRunHandler): consecutive room events that every room
// handler can take as one. Their parsed events come with them.
func (w *Worker) runAt(items []database.Item) (int, []inbound.RoomEvent) {
	handlers := w.cfg.Handlers.Room
	if len(handlers) == 0 || len(items) < 2 {
		return 0, nil
	}
	for _, h := range handlers {
		if _, ok := h.(inbound.RoomRunHandler); !ok {
			return 0, nil
		}
	}
	var evs []inbound.RoomEvent
	for _, it := range items {
		if it.Kind != inbound.KindRoomEvent || it.Attempts > 0 {
			break // an item that failed before is tried alone
		}
		ev, err := inbound.ParseRoomEvent(it.Payload)
		if err != nil {
			break // applied singly, to be parked with its error
		}
		runnable := true
		for _, h := range handlers {
			runnable = runnable && h.(inbound.RoomRunHandler).Runnable(ev)
		}
		if !runnable {
			break
		}
		evs = append(evs, ev)
	}
	return len(evs), evs
}

// applyRun gives a run of items to every room handler, in a savepoint of
// tx. If a handler declines the run (inbound.ErrNoRun) or fails it, the
// savepoint is rolled back and false returned: the items are then
// applied one by one, which decides each as if there had been no run.
func (w *Worker) applyRun(ctx context.Context, tx pgx.Tx, batch *database.Producer, items []database.Item, evs []inbound.RoomEvent) (_ *inbound.Work, ok bool) {
	outcome := "one_by_one"
	defer func() { w.cfg.Metrics.RunEvents.WithLabelValues(outcome).Add(float64(len(items))) }()
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.ItemTimeout)
	defer cancel()
	work := &inbound.Work{Q: sp, Out: database.NewProducer(sp), Item: items[0]}
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
			}
		}()
		for _, h := range w.cfg.Handlers.Room {
			if err = h.(inbound.RoomRunHandler).RoomEvents(ctx, work, items, evs); err != nil {
				return
			}
		}
	}()
	if err == nil {
		err = sp.Commit(ctx)
	}
	if err != nil {
		// Each item, applied alone, reports its own failure if it has one.
		log := w.itemLog(items[0])
		log.Debug().Err(err).Int("items", len(items)).Msg("Run of room events declined or failed; applying them one by one")
		if rerr := sp.Rollback(context.WithoutCancel(ctx)); rerr != nil {
			log.Warn().Err(rerr).Msg("Rolling back a run's savepoint failed")
		}
		return nil, false
	}
	batch.Merge(work.Out)
	outcome = "applied"
	return work, true
}

// applyItem runs the handlers of one item in a savepoint of tx: on error,
// the item's writes are undone and the rest of the batch is unaffected.
func (w *Worker) applyItem(ctx context.Context, tx pgx.Tx, batch *database.Producer, it database.Item) (_ *inbound.Work, err error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("savepoint: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.ItemTimeout)
	defer cancel()
	work := &inbound.Work{Q: sp, Out: database.NewProducer(sp), Item: it}
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
			}
		}()
		err = dispatch(ctx, w.cfg.Handlers, work, it)
	}()
	if err != nil {
		if rerr := sp.Rollback(context.WithoutCancel(ctx)); rerr != nil {
			return nil, fmt.Errorf("%w (and rolling back its savepoint failed: %v)", err, rerr)
		}
		return nil, err
	}
	if err := sp.Commit(ctx); err != nil {
		return nil, fmt.Errorf("release savepoint: %w", err)
	}
	batch.Merge(work.Out)
	return work, nil
}

// dispatch decodes an item's payload and hands it to every handler of its
// kind. The payload was validated when the item was made, but it comes
// back from the database, which is not trusted either: a payload that no
// longer parses is a permanent failure.
func dispatch(ctx context.Context, h inbound.Handlers, w *inbound.Work, it database.Item) error {
	bad := func(err error) error {
		return fmt.Errorf("%w: %s payload: %w", inbound.ErrPermanent, it.Kind, err)
	}
	switch it.Kind {
	case inbound.KindRoomEvent:
		ev, err := inbound.ParseRoomEvent(it.Payload)
		if err != nil {
			return bad(err)
		}
		for _, r := range h.Room {
			if err := r.RoomEvent(ctx, w, ev); err != nil {
				return err
			}
		}
	case inbound.KindEphemeral:
		ev, err := inbound.ParseEphemeralEvent(it.Payload)
		if err != nil {
			return bad(err)
		}
		for _, r := range h.Ephemeral {
			if err := r.Ephemeral(ctx, w, ev); err != nil {
				return err
			}
		}
	case inbound.KindToDevice:
		ev, err := inbound.ParseToDeviceEvent(it.Payload)
		if err != nil {
			return bad(err)
		}
		for _, r := range h.ToDevice {
			if err := r.ToDevice(ctx, w, ev); err != nil {
				return err
			}
		}
	case inbound.KindDeviceList:
		c, err := inbound.ParseDeviceListChange(it.Payload)
		if err != nil {
			return bad(err)
		}
		for _, r := range h.DeviceList {
			if err := r.DeviceList(ctx, w, c); err != nil {
				return err
			}
		}
	case inbound.KindKeyCounts:
		k, err := inbound.ParseKeyCounts(it.Payload)
		if err != nil {
			return bad(err)
		}
		for _, r := range h.KeyCounts {
			if err := r.KeyCounts(ctx, w, k); err != nil {
				return err
			}
		}
	default:
		if ih := h.Items[it.Kind]; ih != nil {
			return ih.Item(ctx, w, it)
		}
		return fmt.Errorf("%w: unknown item kind %q", inbound.ErrPermanent, it.Kind)
	}
	return nil
}

func (w *Worker) backoff(attempts int) time.Duration {
	d := w.cfg.RetryBackoff
	for i := 1; i < attempts && d < w.cfg.MaxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, w.cfg.MaxRetryBackoff)
}

func (w *Worker) itemLog(it database.Item) zerolog.Logger {
	c := w.cfg.Log.With().Int64("item", it.Seq).Str("queue", it.Queue).Str("kind", it.Kind)
	if it.RoomID != "" {
		c = c.Str("room_id", it.RoomID)
	}
	if it.EventID != "" {
		c = c.Str("event_id", it.EventID)
	}
	if it.TxnSeq != 0 {
		c = c.Int64("txn_seq", it.TxnSeq)
	}
	return c.Logger()
}
