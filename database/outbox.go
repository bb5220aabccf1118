package database

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// OutgoingEvent is a room event waiting to be sent as a puppet device.
type OutgoingEvent struct {
	Seq       int64
	TxnID     string
	UserID    string
	DeviceID  string
	RoomID    string
	EventType string
	Content   []byte
	Attempts  int
}

// EnqueueEvent adds ev to the outbox inside tx and returns its
// transaction id. The id is random rather than derived from seq because
// Synapse keys an appservice's transaction ids by path and appservice
// only, not by user, and seq restarts on a new database.
func EnqueueEvent(ctx context.Context, tx pgx.Tx, ev OutgoingEvent) (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("enqueue event for %s: %w", ev.RoomID, err)
	}
	txnID := "mlsas." + hex.EncodeToString(b[:])
	_, err := tx.Exec(ctx, `INSERT INTO outbox (txn_id, user_id, device_id, room_id, event_type, content)
		VALUES ($1, $2, $3, $4, $5, $6)`, txnID, ev.UserID, ev.DeviceID, ev.RoomID, ev.EventType, ev.Content)
	if err != nil {
		return "", fmt.Errorf("enqueue event %s for %s: %w", txnID, ev.RoomID, err)
	}
	return txnID, nil
}

// NextOutgoing returns the oldest event neither sent nor given up on, or
// nil. Sending in creation order keeps each room's events in order.
func (db *DB) NextOutgoing(ctx context.Context) (*OutgoingEvent, error) {
	var ev OutgoingEvent
	err := db.Pool.QueryRow(ctx, `SELECT seq, txn_id, user_id, device_id, room_id, event_type, content, attempts
		FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL ORDER BY seq LIMIT 1`).
		Scan(&ev.Seq, &ev.TxnID, &ev.UserID, &ev.DeviceID, &ev.RoomID, &ev.EventType, &ev.Content, &ev.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("select next outgoing event: %w", err)
	}
	return &ev, nil
}

// MarkSent records the event ID the homeserver gave the event.
func (db *DB) MarkSent(ctx context.Context, seq int64, eventID string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE outbox SET sent_at = now(), event_id = $2, attempts = attempts + 1,
		last_error = NULL WHERE seq = $1`, seq, eventID)
	if err != nil {
		return fmt.Errorf("mark outgoing event %d sent: %w", seq, err)
	}
	return nil
}

// MarkSendFailed records a failed attempt; permanent also gives up on
// the event so that it no longer holds back the ones after it.
func (db *DB) MarkSendFailed(ctx context.Context, seq int64, reason string, permanent bool) error {
	_, err := db.Pool.Exec(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = $2,
		failed_at = CASE WHEN $3 THEN now() END WHERE seq = $1`, seq, reason, permanent)
	if err != nil {
		return fmt.Errorf("record send failure of outgoing event %d: %w", seq, err)
	}
	return nil
}
