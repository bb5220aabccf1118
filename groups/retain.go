package groups

import (
	"context"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// timerRetain runs retention in a room that fell quiet. Retention runs at
// every save of the room (saveRoom), but an epoch it keeps for a while
// (a settled epoch's groups.epoch_linger, an epoch's
// groups.max_epoch_age) would otherwise stay, with its secrets, until the
// room's next event, however far off.
const timerRetain = "dmls_retain"

// scheduleRetain sets r's retention timer for when its Member would next
// drop an epoch it keeps (epochs.Member.RetainAt), if it would. An
// earlier time already set stays: the run then finds nothing due and
// sets the timer again.
func (s *Service) scheduleRetain(ctx context.Context, q database.Querier, r *room) error {
	at := r.m.RetainAt()
	if at.IsZero() {
		return nil
	}
	if err := database.ScheduleTimer(ctx, q, database.Timer{Kind: timerRetain, Key: string(r.id), Queue: roomQueue(r.id),
		DueAt: at}, database.Earliest); err != nil {
		return errf(r.id, "schedule retention: %w", err)
	}
	return nil
}

// retainTimer loads the room and saves it, which runs retention.
type retainTimer struct{ s *Service }

func (t retainTimer) Timer(ctx context.Context, w *inbound.Work, timer database.Timer) (time.Time, error) {
	s := t.s
	// This run's row goes first, so that what the save schedules is a new
	// row (as commitTimer's): rescheduling the running timer "at the
	// earliest" would keep its past due time, and finishing the run would
	// delete it.
	if err := database.CancelTimer(ctx, w.Q, timerRetain, timer.Key); err != nil {
		return time.Time{}, err
	}
	r, err := s.loadRoom(ctx, w.Q, id.RoomID(timer.Key))
	if err != nil || r == nil || r.m == nil {
		return time.Time{}, err
	}
	if err := s.saveRoom(ctx, w, r); err != nil {
		return time.Time{}, err
	}
	// saveRoom sets the timer again only when the graph changed; if
	// nothing was due yet, it is set here.
	return time.Time{}, s.scheduleRetain(ctx, w.Q, r)
}
