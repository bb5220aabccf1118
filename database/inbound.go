package database

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// InboundEvent is one room, ephemeral or to-device event as it arrived.
type InboundEvent struct {
	Kind       string // "room", "ephemeral" or "to_device"
	Type       string
	RoomID     string
	EventID    string
	Sender     string
	ToUserID   string
	ToDeviceID string
	Raw        []byte
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// RecordEvent appends ev to the log of what arrived with transaction txnSeq.
func RecordEvent(ctx context.Context, q Querier, txnSeq int64, ev InboundEvent) error {
	return RecordEvents(ctx, q, []int64{txnSeq}, []InboundEvent{ev})
}

// RecordEvents appends evs, in order, to the log of what arrived, each
// with the transaction at the same index of txnSeqs, in one statement.
func RecordEvents(ctx context.Context, q Querier, txnSeqs []int64, evs []InboundEvent) error {
	if len(txnSeqs) != len(evs) {
		return fmt.Errorf("record %d events with %d transactions", len(evs), len(txnSeqs))
	}
	n := len(evs)
	txns, kinds, types := make([]*int64, n), make([]string, n), make([]string, n)
	rooms, events, senders := make([]*string, n), make([]*string, n), make([]*string, n)
	toUsers, toDevices, raws := make([]*string, n), make([]*string, n), make([][]byte, n)
	for i, ev := range evs {
		txns[i], kinds[i], types[i] = nullableInt(txnSeqs[i]), ev.Kind, ev.Type
		rooms[i], events[i], senders[i] = nullable(ev.RoomID), nullable(ev.EventID), nullable(ev.Sender)
		toUsers[i], toDevices[i], raws[i] = nullable(ev.ToUserID), nullable(ev.ToDeviceID), ev.Raw
	}
	_, err := q.Exec(ctx, `INSERT INTO inbound_event
		(txn_seq, kind, event_type, room_id, event_id, sender, to_user_id, to_device_id, raw)
		SELECT t, k, y, r, e, s, u, d, w FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
			$6::text[], $7::text[], $8::text[], $9::bytea[]) WITH ORDINALITY AS x(t, k, y, r, e, s, u, d, w, i) ORDER BY i`,
		txns, kinds, types, rooms, events, senders, toUsers, toDevices, raws)
	if err != nil && n == 1 {
		return fmt.Errorf("record %s event %s: %w", evs[0].Kind, evs[0].EventID, err)
	}
	if err != nil {
		return fmt.Errorf("record %d events: %w", n, err)
	}
	return nil
}

// MemberEvent is one m.room.member state event.
type MemberEvent struct {
	RoomID     string
	EventID    string
	UserID     string // the state key
	Membership string
}

// SetMembership records a m.room.member event: the event itself (the
// membership authority asks for membership at an event, DESIGN 5) as the
// user's current membership of the room. A repeated event changes
// nothing.
func SetMembership(ctx context.Context, q Querier, ev MemberEvent) error {
	room, err := RoomNumber(ctx, q, ev.RoomID)
	if err != nil {
		return fmt.Errorf("set membership of %s: %w", ev.UserID, err)
	}
	// The current event before the new one: room_member_current allows
	// one. A member's events are recorded in its room's order, so two
	// writers never race for one member; if they did, the second would
	// fail on the index and its work item be retried.
	_, err = q.Exec(ctx, `UPDATE room_member_event SET current = false
		WHERE room_no = $1 AND user_id = $2 AND current
		AND NOT EXISTS (SELECT 1 FROM room_member_event WHERE event_id = $3)`, room, ev.UserID, ev.EventID)
	if err != nil {
		return fmt.Errorf("set membership of %s in %s: %w", ev.UserID, ev.RoomID, err)
	}
	_, err = q.Exec(ctx, `INSERT INTO room_member_event (event_id, room_no, user_id, membership, current)
		VALUES ($1, $2, $3, $4, true) ON CONFLICT (event_id) DO NOTHING`,
		ev.EventID, room, ev.UserID, ev.Membership)
	if err != nil {
		return fmt.Errorf("record membership event %s: %w", ev.EventID, err)
	}
	return nil
}

// RoomNumber returns the number that names room in its log (room_log,
// migration 0025) and, since migration 0032, in the membership record,
// numbering a room seen for the first time. Two transactions numbering the same room get the
// same number: the second's insert waits for the first and, once it has
// committed, reads its row.
func RoomNumber(ctx context.Context, q Querier, room string) (int64, error) {
	const lookup = `SELECT room_no FROM room_log WHERE room_id = $1`
	var no int64
	err := q.QueryRow(ctx, `WITH found AS (`+lookup+`),
		added AS (INSERT INTO room_log (room_id) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM found)
			ON CONFLICT (room_id) DO NOTHING RETURNING room_no)
		SELECT room_no FROM found UNION ALL SELECT room_no FROM added`, room).Scan(&no)
	if errors.Is(err, pgx.ErrNoRows) {
		// Numbered by a transaction that committed after this statement's
		// snapshot was taken: a new statement sees it.
		err = q.QueryRow(ctx, lookup, room).Scan(&no)
	}
	if err != nil {
		return 0, fmt.Errorf("number of room %s: %w", room, err)
	}
	return no, nil
}

// Membership returns userID's recorded membership of roomID, or "" if
// none is recorded.
func Membership(ctx context.Context, q Querier, roomID, userID string) (string, error) {
	var m string
	err := q.QueryRow(ctx, `SELECT membership FROM room_member WHERE room_id = $1 AND user_id = $2`,
		roomID, userID).Scan(&m)
	if err == pgx.ErrNoRows {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read membership of %s in %s: %w", userID, roomID, err)
	}
	return m, nil
}

// RecordDeviceListChange notes that userID's device list changed or that
// we no longer share a room with userID.
func RecordDeviceListChange(ctx context.Context, q Querier, txnSeq int64, userID, change string) error {
	_, err := q.Exec(ctx, `INSERT INTO device_list_change (txn_seq, user_id, change) VALUES ($1, $2, $3)`,
		nullableInt(txnSeq), userID, change)
	if err != nil {
		return fmt.Errorf("record device list change of %s: %w", userID, err)
	}
	return nil
}

// SetKeyCount stores the homeserver's latest count of one-time keys of
// one algorithm for one device.
func SetKeyCount(ctx context.Context, q Querier, txnSeq int64, userID, deviceID, algorithm string, count int) error {
	_, err := q.Exec(ctx, `INSERT INTO device_key_count (user_id, device_id, algorithm, count, txn_seq)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, device_id, algorithm) DO UPDATE
		SET count = excluded.count, txn_seq = excluded.txn_seq, updated_at = now()`,
		userID, deviceID, algorithm, count, nullableInt(txnSeq))
	if err != nil {
		return fmt.Errorf("set %s key count of %s/%s: %w", algorithm, userID, deviceID, err)
	}
	return nil
}

// KeyCounts returns the stored one-time key counts of a device by algorithm.
func KeyCounts(ctx context.Context, q Querier, userID, deviceID string) (map[string]int, error) {
	rows, err := q.Query(ctx, `SELECT algorithm, count FROM device_key_count WHERE user_id = $1 AND device_id = $2`,
		userID, deviceID)
	if err != nil {
		return nil, fmt.Errorf("read key counts of %s/%s: %w", userID, deviceID, err)
	}
	counts := map[string]int{}
	var alg string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&alg, &n}, func() error { counts[alg] = n; return nil })
	if err != nil {
		return nil, fmt.Errorf("read key counts of %s/%s: %w", userID, deviceID, err)
	}
	return counts, nil
}

// SetUnusedFallbackKeyTypes stores which fallback key algorithms of a
// device the homeserver still holds unused.
func SetUnusedFallbackKeyTypes(ctx context.Context, q Querier, txnSeq int64, userID, deviceID string, types []string) error {
	if types == nil {
		types = []string{}
	}
	_, err := q.Exec(ctx, `INSERT INTO device_fallback_key (user_id, device_id, unused_types, txn_seq)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, device_id) DO UPDATE
		SET unused_types = excluded.unused_types, txn_seq = excluded.txn_seq, updated_at = now()`,
		userID, deviceID, types, nullableInt(txnSeq))
	if err != nil {
		return fmt.Errorf("set fallback key types of %s/%s: %w", userID, deviceID, err)
	}
	return nil
}
