package database

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OutgoingKind is what an outbox row asks the homeserver to do.
type OutgoingKind string

const (
	// RoomEvent sends a message event into a room as a puppet device.
	RoomEvent OutgoingKind = "room_event"
	// ToDevice sends a to-device message to one device.
	ToDevice OutgoingKind = "to_device"
	// KeyUpload uploads keys (POST /keys/upload) as a puppet device.
	KeyUpload OutgoingKind = "key_upload"
)

// OutgoingEvent is one outbox row.
type OutgoingEvent struct {
	Seq   int64
	TxnID string
	Kind  OutgoingKind
	// UserID and DeviceID are the puppet device that acts.
	UserID   string
	DeviceID string
	// RoomID and EventType for a room event; EventType, ToUserID and
	// ToDeviceID for a to-device message.
	RoomID     string
	EventType  string
	ToUserID   string
	ToDeviceID string
	Content    []byte
	// After, if not zero, is an earlier row that must be sent first. If
	// FillField is set, the content's top-level field of that name gets
	// After's event id when this row is sent (a Welcome names its commit).
	After     int64
	FillField string
	// Hook names who wants to learn the event id when the row is sent,
	// with HookRef as their reference (an epoch waiting for its
	// commit_event); see matrix.SentHook.
	Hook    string
	HookRef []byte
	// Filled when a row is read for sending.
	Attempts     int
	AfterEventID string // After's event id once it was sent
	AfterFailed  bool   // After was given up on
	AfterPending bool   // After is still waiting to be sent
}

// Queue returns the outbound queue that orders ev: the room for room
// events, the acting device for to-device messages and key uploads.
func (ev *OutgoingEvent) Queue() string {
	switch ev.Kind {
	case RoomEvent:
		return "out:room:" + ev.RoomID
	case ToDevice:
		return "out:to_device:" + ev.UserID + "|" + ev.DeviceID
	default:
		return "out:keys:" + ev.UserID + "|" + ev.DeviceID
	}
}

// NewTxnID returns a fresh transaction id for an outgoing request. It is
// random rather than derived from seq because Synapse keys an
// appservice's transaction ids by path and appservice only, not by user,
// and seq restarts on a new database.
func NewTxnID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("transaction id: %w", err)
	}
	return "mlsas." + hex.EncodeToString(b[:]), nil
}

// AddOutgoing adds ev to the outbox inside the producer's transaction and
// returns its sequence number and transaction id. The transaction id is
// fixed now: a retry after a crash re-sends with the same id, which the
// homeserver deduplicates.
func (p *Producer) AddOutgoing(ctx context.Context, ev OutgoingEvent) (int64, string, error) {
	if ev.Kind == "" {
		ev.Kind = RoomEvent
	}
	txnID, err := NewTxnID()
	if err != nil {
		return 0, "", err
	}
	queue := ev.Queue()
	var seq int64
	err = p.q.QueryRow(ctx, `INSERT INTO outbox (txn_id, kind, queue, user_id, device_id, room_id, event_type,
		to_user_id, to_device_id, content, after_seq, fill_field, hook, hook_ref)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING seq`,
		txnID, string(ev.Kind), queue, ev.UserID, ev.DeviceID, nullable(ev.RoomID), nullable(ev.EventType),
		nullable(ev.ToUserID), nullable(ev.ToDeviceID), ev.Content, nullableInt(ev.After), nullable(ev.FillField),
		nullable(ev.Hook), ev.HookRef).Scan(&seq)
	if err != nil {
		return 0, "", fmt.Errorf("enqueue %s %s on %s: %w", ev.Kind, txnID, queue, err)
	}
	p.change(queue, Outbound).delta++
	return seq, txnID, nil
}

// EnqueueEvent adds one outgoing event in tx and flushes at once; for
// callers that add a single row. Producers adding several use AddOutgoing
// and Flush.
func EnqueueEvent(ctx context.Context, tx pgx.Tx, ev OutgoingEvent) (string, error) {
	p := NewProducer(tx)
	_, txnID, err := p.AddOutgoing(ctx, ev)
	if err != nil {
		return "", err
	}
	return txnID, p.Flush(ctx)
}

// HeadOutgoing returns the first row of queue neither sent nor given up
// on, with the state of the row it waits for; nil if none. Call it with
// the queue's lock held.
func HeadOutgoing(ctx context.Context, q Querier, queue string) (*OutgoingEvent, error) {
	var ev OutgoingEvent
	var roomID, eventType, toUser, toDevice, fill, hook, afterEvent *string
	var after *int64
	var afterSent, afterFailed *time.Time
	err := q.QueryRow(ctx, `SELECT o.seq, o.txn_id, o.kind, o.user_id, o.device_id, o.room_id, o.event_type,
		o.to_user_id, o.to_device_id, o.content, o.after_seq, o.fill_field, o.hook, o.hook_ref, o.attempts,
		a.event_id, a.sent_at, a.failed_at
		FROM outbox o LEFT JOIN outbox a ON a.seq = o.after_seq
		WHERE o.queue = $1 AND o.sent_at IS NULL AND o.failed_at IS NULL ORDER BY o.seq LIMIT 1`, queue).
		Scan(&ev.Seq, &ev.TxnID, &ev.Kind, &ev.UserID, &ev.DeviceID, &roomID, &eventType, &toUser, &toDevice,
			&ev.Content, &after, &fill, &hook, &ev.HookRef, &ev.Attempts, &afterEvent, &afterSent, &afterFailed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read head of %s: %w", queue, err)
	}
	for _, f := range []struct {
		src *string
		dst *string
	}{{roomID, &ev.RoomID}, {eventType, &ev.EventType}, {toUser, &ev.ToUserID}, {toDevice, &ev.ToDeviceID},
		{fill, &ev.FillField}, {hook, &ev.Hook}, {afterEvent, &ev.AfterEventID}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	if after != nil {
		ev.After = *after
		ev.AfterFailed = afterFailed != nil
		ev.AfterPending = afterSent == nil && afterFailed == nil
	}
	return &ev, nil
}

// OutgoingSent records the event id the homeserver gave the row (empty for
// requests that make no event), lowers its queue's counter in p, and makes
// the queues of rows waiting for it due at once.
func OutgoingSent(ctx context.Context, q Querier, p *Producer, ev *OutgoingEvent, eventID string) error {
	_, err := q.Exec(ctx, `UPDATE outbox SET sent_at = now(), event_id = $2, attempts = attempts + 1,
		last_error = NULL WHERE seq = $1`, ev.Seq, nullable(eventID))
	if err != nil {
		return fmt.Errorf("mark outgoing %s sent: %w", ev.TxnID, err)
	}
	p.finished(ev.Queue(), Outbound, 1, time.Now())
	return wakeDependents(ctx, q, p, ev.Seq)
}

// OutgoingFailed records a failed attempt. A permanent failure gives the
// row up, so that it no longer holds back its queue; rows waiting for it
// are then given up too when their turn comes. A transient one keeps the
// row at the head of its queue until retry.
func OutgoingFailed(ctx context.Context, q Querier, p *Producer, ev *OutgoingEvent, reason string, permanent bool, retry time.Time) error {
	_, err := q.Exec(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = $2,
		failed_at = CASE WHEN $3 THEN now() END WHERE seq = $1`, ev.Seq, errorText(reason), permanent)
	if err != nil {
		return fmt.Errorf("record failure of outgoing %s: %w", ev.TxnID, err)
	}
	if permanent {
		p.finished(ev.Queue(), Outbound, 1, time.Now())
		return wakeDependents(ctx, q, p, ev.Seq)
	}
	p.Touch(ev.Queue(), Outbound, retry)
	return nil
}

func wakeDependents(ctx context.Context, q Querier, p *Producer, seq int64) error {
	rows, err := q.Query(ctx, `SELECT DISTINCT queue FROM outbox WHERE after_seq = $1 AND sent_at IS NULL AND failed_at IS NULL`, seq)
	if err != nil {
		return fmt.Errorf("find rows waiting for outgoing %d: %w", seq, err)
	}
	queues, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("find rows waiting for outgoing %d: %w", seq, err)
	}
	for _, queue := range queues {
		p.Touch(queue, Outbound, time.Now())
	}
	return nil
}

// OutgoingByTxnID returns a row's event id once it was sent ("" before).
func OutgoingByTxnID(ctx context.Context, q Querier, txnID string) (eventID string, sent bool, err error) {
	var id *string
	var sentAt *time.Time
	err = q.QueryRow(ctx, `SELECT event_id, sent_at FROM outbox WHERE txn_id = $1`, txnID).Scan(&id, &sentAt)
	if err != nil {
		return "", false, fmt.Errorf("read outgoing %s: %w", txnID, err)
	}
	if id != nil {
		eventID = *id
	}
	return eventID, sentAt != nil, nil
}
