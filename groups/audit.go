package groups

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// The membership audit compares each room's recorded membership with the
// homeserver's and queues the membership events that never arrived.
//
// Synapse can hold back a transaction for good: one it creates while it
// counts the appservice as down, after its recoverer last looked for unsent
// ones, stays unsent until the next failure (synapse/appservice/scheduler.py,
// _TransactionController.send and _Recoverer.retry). Our own puppets' joins
// are read back when they are made (queueOwnJoin); anyone else's membership
// change in such a transaction would be missed until the user's next one:
// their devices neither added nor removed by our committer, the change never
// in our puppets' logs. A service is counted down when it restarts or cannot
// be reached, so the audit runs at start, then every auditInterval.
//
// The audit reads the room's current state (/state, as one of our joined
// puppets) and queues every m.room.member event in it that is not
// recorded (unrecordedMembers, which seedMembers uses too) on the room's
// queue, as if it had arrived: every room handler is idempotent per
// event, so the real event, should it come, changes nothing. The state
// holds each user's latest event, so nothing older than what is recorded
// can be queued.
const (
	// auditInterval is the time between two audits of a room.
	auditInterval = time.Hour
	// auditSpacing spaces the rooms' audits after a sweep, so that a
	// service with many rooms does not read all their states at once.
	auditSpacing = 100 * time.Millisecond
)

// Timer kinds of the audit.
const (
	// timerAuditSweep (one timer, key "all") schedules every room's audit.
	timerAuditSweep = "dmls_audit_sweep"
	// timerAudit audits one room, on its queue.
	timerAudit = "dmls_audit"
)

// Start schedules the membership audit of every room at once (it runs
// every auditInterval after that), and log retention if it is not
// scheduled yet.
func (s *Service) Start(ctx context.Context) error {
	if err := database.ScheduleTimer(ctx, s.cfg.DB, database.Timer{Kind: timerAuditSweep, Key: "all", DueAt: s.now()},
		database.Replace); err != nil {
		return fmt.Errorf("schedule the membership audit: %w", err)
	}
	if err := database.ScheduleTimer(ctx, s.cfg.DB, database.Timer{Kind: timerLogRetention, Key: "all", DueAt: s.now()},
		database.KeepExisting); err != nil {
		return fmt.Errorf("schedule log retention: %w", err)
	}
	return nil
}

// auditSweep schedules an audit of each DMLS room where a puppet of ours
// is joined. (Other rooms' members from before our first join were never
// recorded, as seedMembers records them in DMLS rooms only, and would be
// delivered as news.)
type auditSweep struct{ s *Service }

func (t auditSweep) Timer(ctx context.Context, w *inbound.Work, _ database.Timer) (time.Time, error) {
	s := t.s
	rows, err := w.Q.Query(ctx, `SELECT DISTINCT m.room_id FROM room_member m JOIN dmls_room USING (room_id)
		WHERE m.membership = 'join' AND (starts_with(m.user_id, $1) OR m.user_id = $2) ORDER BY m.room_id`,
		s.cfg.Puppets.UserIDPrefix(), s.cfg.Puppets.BotID())
	if err != nil {
		return time.Time{}, fmt.Errorf("list rooms to audit: %w", err)
	}
	rooms, err := pgx.CollectRows(rows, pgx.RowTo[id.RoomID])
	if err != nil {
		return time.Time{}, fmt.Errorf("list rooms to audit: %w", err)
	}
	now := s.now()
	for i, room := range rooms {
		due := now.Add(time.Duration(i) * auditSpacing)
		if err := database.ScheduleTimer(ctx, w.Q, database.Timer{Kind: timerAudit, Key: string(room),
			Queue: inbound.RoomQueue(room), DueAt: due}, database.Earliest); err != nil {
			return time.Time{}, fmt.Errorf("schedule the audit of %s: %w", room, err)
		}
	}
	if len(rooms) > 0 {
		s.cfg.Log.Info().Int("rooms", len(rooms)).Msg("Membership audit scheduled")
	}
	return now.Add(auditInterval), nil
}

// auditTimer audits one room (see auditInterval).
type auditTimer struct{ s *Service }

func (t auditTimer) Timer(ctx context.Context, w *inbound.Work, timer database.Timer) (time.Time, error) {
	s, room := t.s, id.RoomID(timer.Key)
	log := s.cfg.Log.With().Stringer("room_id", room).Logger()
	puppets, err := s.joinedPuppets(ctx, w.Q, room)
	if err != nil || len(puppets) == 0 {
		return time.Time{}, err // none of ours is left to read as
	}
	events, err := s.cfg.Puppets.RoomState(ctx, puppets[0], room)
	if err != nil {
		// The next sweep tries again; the queue need not wait for it.
		w.Count(s.metrics.MemberAudit.WithLabelValues("unreadable"), 1)
		log.Warn().Err(err).Msg("Membership audit could not read the room's state")
		return time.Time{}, nil
	}
	missing, err := unrecordedMembers(ctx, w.Q, room, events)
	if err != nil {
		return time.Time{}, errf(room, "audit: %w", err)
	}
	for _, ev := range missing {
		if err := queueRoomEvent(ctx, w, ev); err != nil {
			return time.Time{}, err
		}
		log.Info().Str("user_id", *ev.StateKey).Str("membership", ev.Membership).Stringer("event_id", ev.EventID).
			Msg("Membership audit queued a membership event the homeserver never sent")
	}
	w.Count(s.metrics.MemberAudit.WithLabelValues("queued"), float64(len(missing)))
	w.Count(s.metrics.MemberAudit.WithLabelValues("audited"), 1)
	return time.Time{}, nil
}

// queueRoomEvent queues ev, read from the homeserver, on its room's queue
// as if it had arrived.
func queueRoomEvent(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent) error {
	if _, err := w.Out.AddItem(ctx, database.Item{Queue: inbound.RoomQueue(ev.RoomID), Kind: inbound.KindRoomEvent,
		RoomID: string(ev.RoomID), EventID: string(ev.EventID), Payload: ev.Raw}); err != nil {
		return errf(ev.RoomID, "queue event %s: %w", ev.EventID, err)
	}
	return nil
}
