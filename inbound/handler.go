package inbound

import (
	"context"
	"errors"
	"time"

	"github.com/mls-appservice/mls-appservice/database"
)

// Work is a handler's access to the database transaction that applies one
// work item (or runs one timer). What the handler writes through Q, and
// what it enqueues through Out, is committed together with the item's
// completion, or not at all: a crash or an error rolls all of it back and
// the item is tried again (DESIGN 3.3).
type Work struct {
	Q   database.Querier
	Out *database.Producer
	// Item is the work item being applied (zero for a timer): its
	// provenance and how many attempts failed before this one.
	Item database.Item

	afterCommit []func()
}

// AfterCommit registers f to run once the database transaction that
// applies the work has committed, and never if it rolls back: for
// in-process notifications (a reader waiting for deliveries) that must
// not announce what may still be undone, and for counters of what was
// done, which would otherwise count each attempt of a work item tried
// again.
func (w *Work) AfterCommit(f func()) { w.afterCommit = append(w.afterCommit, f) }

// A Counter is a metric that only goes up, such as a prometheus.Counter.
type Counter interface{ Add(float64) }

// Count adds n to c once the transaction that applies the work has
// committed (AfterCommit): a counter of what was done, not of attempts.
func (w *Work) Count(c Counter, n float64) { w.AfterCommit(func() { c.Add(n) }) }

// Committed runs the functions registered with AfterCommit. The worker
// calls it after the commit.
func (w *Work) Committed() {
	for _, f := range w.afterCommit {
		f()
	}
	w.afterCommit = nil
}

// The handler interfaces. A handler returns nil when it is done with the
// value, including when it decided to ignore or reject it (it logs and
// counts that itself); an error means the work should be tried again, and
// after the configured number of attempts the item is parked. An error
// wrapping ErrPermanent parks the item at once.
type (
	RoomHandler interface {
		RoomEvent(ctx context.Context, w *Work, ev RoomEvent) error
	}
	EphemeralHandler interface {
		Ephemeral(ctx context.Context, w *Work, ev EphemeralEvent) error
	}
	ToDeviceHandler interface {
		ToDevice(ctx context.Context, w *Work, ev ToDeviceEvent) error
	}
	DeviceListHandler interface {
		DeviceList(ctx context.Context, w *Work, c DeviceListChange) error
	}
	KeyCountHandler interface {
		KeyCounts(ctx context.Context, w *Work, k KeyCounts) error
	}
	// TimerHandler runs due timers of one kind. It returns when the timer
	// should run again, or the zero time to delete it.
	TimerHandler interface {
		Timer(ctx context.Context, w *Work, t database.Timer) (next time.Time, err error)
	}
	// RoomRunHandler is a RoomHandler that can also apply a run of
	// consecutive events of one room queue at once, in one call, which
	// saves what every event would otherwise pay again (reading the
	// room, writing it back, one statement per event). The worker makes a
	// run of the events that every room handler calls Runnable, and
	// gives the run to each handler in turn; if any handler fails it,
	// the run's writes are rolled back and its events are applied one by
	// one, which decides every event as before.
	//
	// So a run is only a faster way to reach what the events one by one
	// reach: a handler returns ErrNoRun, before it logs or counts
	// anything, when an event of the run needs more than its fast path,
	// and each handler sees the run only after the handlers before it
	// have seen all of it, so Runnable must refuse an event whose effect
	// on one handler another reads (a membership change).
	RoomRunHandler interface {
		RoomHandler
		Runnable(ev RoomEvent) bool
		// RoomEvents applies evs, the events of items, in order.
		RoomEvents(ctx context.Context, w *Work, items []database.Item, evs []RoomEvent) error
	}
	// ItemHandler applies work items of a kind that a handler enqueued
	// itself (not from a transaction): it decodes the payload, which it
	// wrote, and treats it as untrusted like any stored blob.
	ItemHandler interface {
		Item(ctx context.Context, w *Work, it database.Item) error
	}
)

// Handlers lists the handlers of each kind of work; each item goes to
// every handler of its kind, in order, within one transaction.
type Handlers struct {
	Room       []RoomHandler
	Ephemeral  []EphemeralHandler
	ToDevice   []ToDeviceHandler
	DeviceList []DeviceListHandler
	KeyCounts  []KeyCountHandler
	// Timers maps a timer kind to its handler.
	Timers map[string]TimerHandler
	// Items maps the kinds of items that handlers enqueue to their handler.
	Items map[string]ItemHandler
}

// ErrPermanent marks an error that retrying cannot cure.
var ErrPermanent = errors.New("permanent failure")

// ErrNoRun is returned by a RoomRunHandler for a run it cannot apply at
// once; the worker then applies the run's events one by one.
var ErrNoRun = errors.New("run applied event by event")
