package groups

import (
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// Orphans are devices of ours that the base epoch's group holds but for
// which we hold no private state: their Welcome has not come (Synapse
// drops to-device messages to an application service that is down, and
// delays them when it is backlogged). Once a device has been one for its
// wait, the room leaves it out of its view, so that the next commit of
// ours removes it and the one after adds it again, with a new KeyPackage
// and a new Welcome.
//
// The wait doubles with every removal of the same device in the same
// room (groups.wait, then twice, four times, up to 32 times that): when
// Welcomes are late because the homeserver is backlogged, the new one is
// as late as the first, and a fixed wait removed and added the same
// devices again and again, each round adding to the backlog. The count
// is forgotten orphanMemory after the device was last an orphan or last
// removed.
const (
	maxOrphanDoublings = 5
	orphanMemory       = 24 * time.Hour
)

// orphanWait is how long a device removed removals times before waits as
// an orphan before it is removed again.
func (s *Service) orphanWait(removals int) time.Duration {
	return s.cfg.Wait << min(max(removals, 0), maxOrphanDoublings)
}

// recoverOrphans records the room's orphans and when each became one,
// and returns when the earliest wait still running ends (zero if none).
// excludeOrphans then leaves out of view those whose wait is over.
func (s *Service) recoverOrphans(ctx context.Context, q database.Querier, r *room) (time.Time, error) {
	base, holders, err := r.base()
	if err != nil {
		return time.Time{}, nil
	}
	if _, err := r.m.Public(base); err != nil {
		return time.Time{}, errf(r.id, "load base epoch: %w", err)
	}
	var orphans []epochs.Device
	held := epochs.DeviceSet(holders)
	for _, d := range r.m.Devices(base) {
		if s.cfg.Puppets.Owns(id.UserID(d.UserID)) && !held[d] {
			orphans = append(orphans, d)
		}
	}
	now := s.now()
	if err := s.settleOrphans(ctx, q, r.id, orphans, false); err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, o := range orphans {
		var since time.Time
		var removals int
		if err := q.QueryRow(ctx, `INSERT INTO dmls_orphan (room_id, device, since, updated_at) VALUES ($1, $2, $3, $3)
			ON CONFLICT (room_id, device) DO UPDATE SET since = coalesce(dmls_orphan.since, excluded.since),
				updated_at = excluded.updated_at
			RETURNING since, removals`, r.id, o.Identity(), now).Scan(&since, &removals); err != nil {
			return time.Time{}, errf(r.id, "orphaned devices: %w", err)
		}
		due := since.Add(s.orphanWait(removals))
		if !due.After(now) {
			pending, err := welcomeMayBeQueued(ctx, q, r.id, o)
			if err != nil {
				return time.Time{}, errf(r.id, "orphaned devices: %w", err)
			}
			if pending {
				// Its Welcome may be in our own intake still, behind a
				// backlog: the wait counts from when nothing for the
				// device is left there.
				if _, err := q.Exec(ctx, `UPDATE dmls_orphan SET since = $3, updated_at = $3 WHERE room_id = $1 AND device = $2`,
					r.id, o.Identity(), now); err != nil {
					return time.Time{}, errf(r.id, "orphaned devices: %w", err)
				}
				s.cfg.Log.Debug().Stringer("room_id", r.id).Str("device", o.Identity()).
					Msg("Orphan's wait starts again: a to-device message for it is still in our queues")
				due = now.Add(s.orphanWait(removals))
			}
		}
		if due.After(now) && (next.IsZero() || due.Before(next)) {
			next = due
		}
	}
	return next, nil
}

// welcomeMayBeQueued reports whether our own work queues still hold a
// to-device message for our device d, or a Welcome for the room, not yet
// applied. A busy service's queues can be tens of seconds behind, and a
// device whose Welcome sits in them is no orphan. (Stored transactions
// not yet split are not looked at: splitting keeps up, and finding a
// device's messages among them would scan inbound_event.)
func welcomeMayBeQueued(ctx context.Context, q database.Querier, room id.RoomID, d epochs.Device) (bool, error) {
	var pending bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM work_item WHERE queue = $1 AND kind = $2 AND NOT parked)
		OR EXISTS (SELECT 1 FROM work_item WHERE queue = $3 AND kind = $4 AND NOT parked)`,
		inbound.DeviceQueue(id.UserID(d.UserID), id.DeviceID(d.DeviceID)), inbound.KindToDevice,
		roomQueue(room), kindWelcome).Scan(&pending)
	return pending, err
}

// orphansSettled records that devices are no orphans any more: they
// joined, holding their keys now.
func (s *Service) orphansSettled(ctx context.Context, q database.Querier, room id.RoomID, devices []epochs.Device) error {
	return s.settleOrphans(ctx, q, room, devices, true)
}

// settleOrphans ends the orphan state of the room's devices listed
// (listed true) or of all others (listed false). A record whose device
// was never removed goes; one that was keeps its count of removals until
// it is orphanMemory old.
func (s *Service) settleOrphans(ctx context.Context, q database.Querier, room id.RoomID, devices []epochs.Device, listed bool) error {
	names := identities(devices)
	now := s.now()
	// The two statements touch distinct rows (removals = 0 or not an
	// orphan, against removals > 0 and an orphan), so one snapshot serves.
	if _, err := q.Exec(ctx, `WITH gone AS (
			DELETE FROM dmls_orphan WHERE room_id = $1 AND (device = ANY($2)) = $3
				AND (removals = 0 OR (since IS NULL AND updated_at < $5))
		)
		UPDATE dmls_orphan SET since = NULL, updated_at = $4
		WHERE room_id = $1 AND (device = ANY($2)) = $3 AND since IS NOT NULL AND removals > 0`,
		room, names, listed, now, now.Add(-orphanMemory)); err != nil {
		return errf(room, "orphaned devices: %w", err)
	}
	return nil
}

// orphansRemoved records that a commit of ours removed devices of ours:
// those that were orphans wait longer should they be added again.
func (s *Service) orphansRemoved(ctx context.Context, w *inbound.Work, room id.RoomID, devices []epochs.Device) error {
	if len(devices) == 0 {
		return nil
	}
	now := s.now()
	rows, err := w.Q.Query(ctx, `UPDATE dmls_orphan o SET since = NULL, removals = o.removals + 1, updated_at = $3
		FROM dmls_orphan old WHERE o.room_id = $1 AND o.device = ANY($2) AND o.since IS NOT NULL
			AND old.room_id = o.room_id AND old.device = o.device
		RETURNING o.device, old.since, o.removals`, room, identities(devices), now)
	if err != nil {
		return errf(room, "orphaned devices: %w", err)
	}
	var device string
	var since time.Time
	var removals int
	_, err = pgx.ForEachRow(rows, []any{&device, &since, &removals}, func() error {
		s.cfg.Log.Warn().Stringer("room_id", room).Str("device", device).Dur("waited", now.Sub(since)).
			Int("removals", removals).Dur("next_wait", s.orphanWait(removals)).
			Msg("Removed our device from the group: it held no keys (its Welcome never came); it is added again")
		w.Count(s.metrics.OrphansRemoved, 1)
		return nil
	})
	if err != nil {
		return errf(room, "orphaned devices: %w", err)
	}
	return nil
}

// excludeOrphans leaves out of view the devices of ours whose wait as
// orphans is over, so that the plan removes them. The record keeps the
// device out of every view until it leaves the group (the removal lands)
// or gets its keys.
func (s *Service) excludeOrphans(ctx context.Context, q database.Querier, r *room, view *epochs.Room) error {
	rows, err := q.Query(ctx, `SELECT device, since, removals FROM dmls_orphan WHERE room_id = $1 AND since IS NOT NULL`, r.id)
	if err != nil {
		return errf(r.id, "orphaned devices: %w", err)
	}
	var device string
	var since time.Time
	var removals int
	now := s.now()
	_, err = pgx.ForEachRow(rows, []any{&device, &since, &removals}, func() error {
		if now.Before(since.Add(s.orphanWait(removals))) {
			return nil
		}
		d, err := epochs.ParseDevice(device)
		if err != nil {
			return nil
		}
		view.Devices[d.UserID] = slices.DeleteFunc(slices.Clone(view.Devices[d.UserID]), func(x string) bool { return x == d.DeviceID })
		return nil
	})
	if err != nil {
		return errf(r.id, "orphaned devices: %w", err)
	}
	return nil
}

// identities names devices as the orphan records do. Never nil: pgx sends
// a nil slice as NULL, and device = ANY(NULL) is NULL, which would match
// nothing either way.
func identities(devices []epochs.Device) []string {
	names := make([]string, len(devices))
	for i, d := range devices {
		names[i] = d.Identity()
	}
	return names
}
