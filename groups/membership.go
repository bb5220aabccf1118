package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
)

// The room's membership is the authority over its group (DESIGN 5). It
// is read from what the recorder stored while applying the room's events
// in order: the membership "now" on the room's queue is the membership at
// the event being applied, and the membership at an earlier event is the
// latest membership event of each user applied up to it.

// members returns the room's membership as recorded.
func members(ctx context.Context, q database.Querier, room id.RoomID) (map[string]epochs.MemberState, error) {
	rows, err := q.Query(ctx, `SELECT user_id, membership FROM room_member WHERE room_id = $1`, room)
	if err != nil {
		return nil, fmt.Errorf("membership of %s: %w", room, err)
	}
	out := map[string]epochs.MemberState{}
	var u, m string
	if _, err := pgx.ForEachRow(rows, []any{&u, &m}, func() error {
		out[u] = epochs.MemberState(m)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("membership of %s: %w", room, err)
	}
	return out, nil
}

// membersAt returns the room's membership at event as applied in order,
// and false if the event was not applied here (it came before any of our
// puppets was in the room, or its record was deleted by retention); the
// caller then falls back to the current membership.
//
// A membership event without a record (retention deleted it, or it was
// never a transaction's: read from the room's state when a puppet of ours
// joined or by the audit) counts as applied before event if it was stored
// before event was recorded. A user's latest applied event counts (rows
// applied in one transaction by their records' order): one the audit
// found after a recorded one of the same user (a leave Synapse never
// sent) is the newer. Retention keeps each member's current event however
// old, so a member who joined long ago is still in the room at a recent
// event.
func membersAt(ctx context.Context, q database.Querier, room id.RoomID, event string) (map[string]epochs.MemberState, bool, error) {
	var seq int64
	var at time.Time
	err := q.QueryRow(ctx, `SELECT seq, recorded_at FROM inbound_event WHERE kind = 'room' AND event_id = $1 AND room_id = $2
		ORDER BY seq LIMIT 1`, event, room).Scan(&seq, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("membership of %s at %s: %w", room, event, err)
	}
	rows, err := q.Query(ctx, `SELECT DISTINCT ON (m.user_id) m.user_id, m.membership
		FROM room_member_event m LEFT JOIN inbound_event e ON e.kind = 'room' AND e.event_id = m.event_id
		WHERE m.room_no = (SELECT room_no FROM room_log WHERE room_id = $1) AND (e.seq <= $2 OR e.seq IS NULL AND m.recorded_at <= $3)
		ORDER BY m.user_id, m.recorded_at DESC, e.seq DESC NULLS LAST`, room, seq, at)
	if err != nil {
		return nil, false, fmt.Errorf("membership of %s at %s: %w", room, event, err)
	}
	out := map[string]epochs.MemberState{}
	var u, m string
	if _, err := pgx.ForEachRow(rows, []any{&u, &m}, func() error {
		out[u] = epochs.MemberState(m)
		return nil
	}); err != nil {
		return nil, false, fmt.Errorf("membership of %s at %s: %w", room, event, err)
	}
	return out, true, nil
}

// membersInGraph returns the room's membership at event as the homeserver
// resolved it in the room's graph (matrix.Puppets.StateAt), asked as our
// puppet as. It costs a request with the room's whole state: it is asked
// only when the order events came in would refuse a commit.
func (s *Service) membersInGraph(ctx context.Context, as id.UserID, room id.RoomID, event string) (map[string]epochs.MemberState, error) {
	events, err := s.cfg.Puppets.StateAt(ctx, as, room, id.EventID(event))
	if err != nil {
		return nil, err
	}
	out := map[string]epochs.MemberState{}
	for _, raw := range events {
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil || ev.Type != "m.room.member" || ev.RoomID != room {
			continue
		}
		out[*ev.StateKey] = epochs.MemberState(ev.Membership)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("state of %s at %s: no membership", room, event)
	}
	return out, nil
}

// seedMembersFirst seeds the room's membership (seedMembers) when puppet,
// who just joined, is the only one of ours joined: while another is, the
// homeserver has been sending us the room's events, and the record is
// already the room's (holes and membership events Synapse never sent are
// found by gap.go and the audit). Each join of ours used to read the
// room's whole state: a room filled with n puppets read n² member events.
func (s *Service) seedMembersFirst(ctx context.Context, w *inbound.Work, room id.RoomID, puppet id.UserID) error {
	joined, err := s.joinedPuppets(ctx, w.Q, room)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(joined, func(u id.UserID) bool { return u != puppet }) {
		w.Count(s.metrics.MembershipSeeds.WithLabelValues("skipped"), 1)
		return nil
	}
	w.Count(s.metrics.MembershipSeeds.WithLabelValues("read"), 1)
	return s.seedMembers(ctx, w.Q, room, puppet)
}

// seedMembers records the room's current membership from its state as
// the homeserver has it. A puppet that joins a room that existed before
// received none of the earlier membership events.
func (s *Service) seedMembers(ctx context.Context, q database.Querier, room id.RoomID, as id.UserID) error {
	state, err := s.cfg.Puppets.RoomState(ctx, as, room)
	if err != nil {
		return err
	}
	missing, err := unrecordedMembers(ctx, q, room, state)
	if err != nil {
		return fmt.Errorf("seed membership of %s: %w", room, err)
	}
	for _, ev := range missing {
		if err := database.SetMembership(ctx, q, database.MemberEvent{RoomID: string(room), EventID: string(ev.EventID),
			UserID: *ev.StateKey, Membership: ev.Membership}); err != nil {
			return err
		}
	}
	return nil
}

// unrecordedMembers returns the m.room.member events of room in state (as
// the homeserver gave it) that are not recorded here, in one lookup: a
// large room's state is thousands of them.
func unrecordedMembers(ctx context.Context, q database.Querier, room id.RoomID, state []json.RawMessage) ([]inbound.RoomEvent, error) {
	var members []inbound.RoomEvent
	var ids []string
	for _, raw := range state {
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil || ev.Type != "m.room.member" || ev.RoomID != room || ev.StateKey == nil {
			continue
		}
		members, ids = append(members, ev), append(ids, string(ev.EventID))
	}
	rows, err := q.Query(ctx, `SELECT event_id FROM room_member_event WHERE event_id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("look up membership events: %w", err)
	}
	known, err := pgx.CollectRows(rows, pgx.RowTo[id.EventID])
	if err != nil {
		return nil, fmt.Errorf("look up membership events: %w", err)
	}
	recorded := make(map[id.EventID]bool, len(known))
	for _, e := range known {
		recorded[e] = true
	}
	return slices.DeleteFunc(members, func(ev inbound.RoomEvent) bool { return recorded[ev.EventID] }), nil
}

// appliedBefore reports whether room event ev was recorded before the
// item now applying it (whose own record the Recorder has just written).
func appliedBefore(ctx context.Context, q database.Querier, ev id.EventID) (bool, error) {
	var n int
	err := q.QueryRow(ctx, `SELECT count(*) FROM inbound_event WHERE kind = 'room' AND event_id = $1`, ev).Scan(&n)
	return n > 1, err
}

// memberEventKnown reports whether the m.room.member event was recorded.
func memberEventKnown(ctx context.Context, q database.Querier, event id.EventID) (bool, error) {
	var known bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM room_member_event WHERE event_id = $1)`, event).Scan(&known)
	return known, err
}

// roomView is the input of the rules: membership and MLS device lists.
func (s *Service) roomView(ctx context.Context, q database.Querier, room id.RoomID, as keys.Device) (epochs.Room, error) {
	m, err := members(ctx, q, room)
	if err != nil {
		return epochs.Room{}, err
	}
	var users []id.UserID
	for u, st := range m {
		if st == epochs.Join || st == epochs.Invite {
			users = append(users, id.UserID(u))
		}
	}
	slices.Sort(users)
	devs, err := s.userDevices(ctx, q, as, users)
	if err != nil {
		return epochs.Room{}, err
	}
	r := epochs.Room{Members: m, Devices: map[string][]string{}}
	for u, ds := range devs {
		list := make([]string, len(ds))
		for i, d := range ds {
			list[i] = string(d)
		}
		r.Devices[string(u)] = list
	}
	return r, nil
}

// userDevices returns the MLS devices of users: our puppets' from our
// records, others' from /keys/query, cached for DeviceTTL. A device-list
// change or a membership event of a user drops the user's entry, and an
// empty list is never trusted from the cache: a user who has not uploaded
// keys yet would otherwise look deviceless until the entry expires, and
// members that disagree about a user's devices add and remove them in
// turn.
func (s *Service) userDevices(ctx context.Context, q database.Querier, as keys.Device, users []id.UserID) (map[id.UserID][]id.DeviceID, error) {
	out := map[id.UserID][]id.DeviceID{}
	var ours, others []id.UserID
	for _, u := range users {
		if s.cfg.Puppets.Owns(u) {
			ours = append(ours, u)
		} else {
			others = append(others, u)
		}
	}
	if len(ours) > 0 {
		// Every device of ours with an identity: one whose keys are not
		// on the homeserver yet is still ours (it may be in the group
		// already, and must not be planned away), but it cannot be
		// added before its upload (see plan).
		od, err := ourDevicesWhere(ctx, q, ours, false)
		if err != nil {
			return nil, err
		}
		for _, u := range ours {
			out[u] = od[u]
		}
	}
	if len(others) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT user_id, devices FROM user_mls_devices
		WHERE user_id = ANY($1) AND fetched_at > $2 AND cardinality(devices) > 0`,
		userStrings(others), s.now().Add(-s.cfg.DeviceTTL))
	if err != nil {
		return nil, fmt.Errorf("cached device lists: %w", err)
	}
	var u string
	var ds []string
	if _, err := pgx.ForEachRow(rows, []any{&u, &ds}, func() error {
		list := make([]id.DeviceID, len(ds))
		for i, d := range ds {
			list[i] = id.DeviceID(d)
		}
		out[id.UserID(u)] = list
		return nil
	}); err != nil {
		return nil, fmt.Errorf("cached device lists: %w", err)
	}
	var stale []id.UserID
	for _, u := range others {
		if _, ok := out[u]; !ok {
			stale = append(stale, u)
		}
	}
	if len(stale) == 0 {
		return out, nil
	}
	fetched, err := s.cfg.Keys.MLSDevices(ctx, as, stale)
	if err != nil {
		return nil, err
	}
	for _, u := range stale {
		list, known := fetched[u]
		if !known {
			// Not answered (the user's homeserver was not reached): the
			// user's devices stay as the group has them (epochs plans
			// no change for a user without a list), and nothing is
			// cached.
			continue
		}
		out[u] = list
		strs := make([]string, len(list))
		for i, d := range list {
			strs[i] = string(d)
		}
		if _, err := q.Exec(ctx, `INSERT INTO user_mls_devices (user_id, devices, fetched_at) VALUES ($1, $2, $3)
			ON CONFLICT (user_id) DO UPDATE SET devices = excluded.devices, fetched_at = excluded.fetched_at`,
			u, strs, s.now()); err != nil {
			return nil, fmt.Errorf("cache device list of %s: %w", u, err)
		}
	}
	return out, nil
}

// forgetDevices drops the cached device lists of users, so that the next
// plan queries them afresh.
func forgetDevices(ctx context.Context, q database.Querier, users []string) error {
	if _, err := q.Exec(ctx, `DELETE FROM user_mls_devices WHERE user_id = ANY($1)`, users); err != nil {
		return fmt.Errorf("drop device lists: %w", err)
	}
	return nil
}

// maxQueuesHeld bounds the rooms' queues devicesChanged holds in one
// transaction (database.KindWaiting): each is an entry of PostgreSQL's
// shared lock table, which has room for max_locks_per_transaction (64 by
// default) times max_connections for all transactions together, and a
// user can be in thousands of rooms.
const maxQueuesHeld = 32

// roomsToReconcileSQL lists the active DMLS rooms where a user is joined
// or invited. It runs for every device-list change of every user we share
// a room with: the index room_member_user finds the user's rows (before
// migration 0027 it read every member of every room).
const roomsToReconcileSQL = `SELECT m.room_id FROM room_member m JOIN dmls_room r USING (room_id)
	WHERE m.user_id = $1 AND m.membership IN ('join', 'invite') AND r.state = 'active'`

// leftOutOfUserSQL deletes a user's records of being left out of rooms:
// "user" (no MLS device) and "user|device" (no usable KeyPackage). The
// latter are the records from "user|" up to but not including "user}" in
// byte order ('}' follows '|'), a range of the index dmls_left_out_user.
const leftOutOfUserSQL = `DELETE FROM dmls_left_out WHERE user_id COLLATE "C" = $1
	OR (user_id COLLATE "C" >= $1 || '|' AND user_id COLLATE "C" < $1 || '}')`

// devicesChanged notes that user's devices changed: the cached list is
// dropped, and every DMLS room where the user is joined or invited is
// asked to reconcile its group.
func (s *Service) devicesChanged(ctx context.Context, q database.Querier, out *database.Producer, user id.UserID) error {
	if _, err := q.Exec(ctx, `DELETE FROM user_mls_devices WHERE user_id = $1`, user); err != nil {
		return fmt.Errorf("drop device list of %s: %w", user, err)
	}
	// The user's record ("no MLS device") and each of their devices'
	// ("user|device": no usable KeyPackage).
	if _, err := q.Exec(ctx, leftOutOfUserSQL, user); err != nil {
		return fmt.Errorf("device list of %s: %w", user, err)
	}
	rows, err := q.Query(ctx, roomsToReconcileSQL, user)
	if err != nil {
		return fmt.Errorf("rooms of %s: %w", user, err)
	}
	rooms, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("rooms of %s: %w", user, err)
	}
	payload, _ := json.Marshal(map[string]string{"user_id": string(user)})
	held := 0
	for _, room := range rooms {
		// A reconcile item that waits, with no worker on the room's
		// queue, runs after this transaction and reads the list afresh:
		// another would only wait behind it. Publishing 10,000 of our
		// devices (each cross-signature a change of its user's list)
		// queued 9,700 items in a room of their puppets.
		if held < maxQueuesHeld {
			waiting, err := database.KindWaiting(ctx, q, roomQueue(id.RoomID(room)), database.Inbound, kindReconcile)
			if err != nil {
				return err
			}
			if waiting {
				held++
				continue
			}
		}
		if _, err := out.AddItem(ctx, database.Item{Queue: roomQueue(id.RoomID(room)), Kind: kindReconcile,
			RoomID: room, Payload: payload}); err != nil {
			return err
		}
	}
	return nil
}

// leftOut records that a joined user has no MLS device, or (user is then
// "user|device") that a device had no usable KeyPackage, once per room:
// logged and counted the first time, silent after (a device-list change
// of the user clears it). A device's record is renewed when it is
// refused again after leftOutRetry.
func (s *Service) leftOut(ctx context.Context, w *inbound.Work, room id.RoomID, user, reason string) error {
	var inserted bool
	err := w.Q.QueryRow(ctx, `INSERT INTO dmls_left_out (room_id, user_id, reason, since) VALUES ($1, $2, $3, $4)
		ON CONFLICT (room_id, user_id) DO UPDATE SET reason = excluded.reason, since = excluded.since,
			refusals = dmls_left_out.refusals + 1
			WHERE dmls_left_out.user_id LIKE '%|%'
		RETURNING xmax = 0`, room, user, reason, s.now()).Scan(&inserted)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("record %s left out of %s: %w", user, room, err)
	}
	if inserted {
		w.Count(s.metrics.LeftOut, 1)
		s.cfg.Log.Warn().Stringer("room_id", room).Str("user_id", user).Str("reason", reason).
			Msg("Joined user left out of the room's MLS group: no usable MLS device")
	}
	return nil
}

// leftOutRetry is how long a device left out because its homeserver had
// no KeyPackage to give (its first upload not in yet, or its stock used
// up) stays out before its KeyPackage is claimed again; each further
// refusal doubles the wait, leftOutDoublings times at most (32 min).
// Uploading KeyPackages (one-time keys) changes no device list, so nothing
// else would bring the device back (seen in a test: a room created the
// moment the invitee's puppet was, its device left out for good).
const (
	leftOutRetry     = 30 * time.Second
	leftOutDoublings = 6
)

// leftOutReason is the reason recorded for a refused KeyPackage.
func leftOutReason(r keys.Reason) string { return "KeyPackage refused: " + string(r) }

// leftOutDevices returns the devices ("user|device") of room that a plan
// must not add (dmls_left_out), and when the first of those that had no
// KeyPackage may be claimed again (zero if none).
func (s *Service) leftOutDevices(ctx context.Context, q database.Querier, room id.RoomID) ([]string, time.Time, error) {
	rows, err := q.Query(ctx, `SELECT user_id, reason, since, refusals FROM dmls_left_out
		WHERE room_id = $1 AND user_id LIKE '%|%'`, room)
	if err != nil {
		return nil, time.Time{}, errf(room, "read left out devices: %w", err)
	}
	var (
		out          []string
		retry        time.Time
		dev, reason  string
		recorded     time.Time
		refusals     int
		now          = s.now()
		noKeyPackage = leftOutReason(keys.ReasonNoKeyPackage)
	)
	_, err = pgx.ForEachRow(rows, []any{&dev, &reason, &recorded, &refusals}, func() error {
		if reason == noKeyPackage {
			at := recorded.Add(leftOutRetry << min(max(refusals-1, 0), leftOutDoublings))
			if !now.Before(at) {
				return nil // claimed again
			}
			if retry.IsZero() || at.Before(retry) {
				retry = at
			}
		}
		out = append(out, dev)
		return nil
	})
	if err != nil {
		return nil, time.Time{}, errf(room, "read left out devices: %w", err)
	}
	return out, retry, nil
}

// since is a small helper for latencies.
func since(t time.Time) float64 { return time.Since(t).Seconds() }
