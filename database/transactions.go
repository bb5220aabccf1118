package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ProcessingLockKey is held (transaction-scoped) by whoever processes a
// stored transaction. Holding it for the whole of one transaction's
// processing serialises processing across instances, which keeps arrival
// order and therefore per-room order. Tests also take it to hold
// processing back while intake keeps acknowledging.
const ProcessingLockKey int64 = 0x6d6c7361_0002 // "mlsa", 2

// StoredTransaction is one appservice transaction as received.
type StoredTransaction struct {
	Seq        int64
	TxnID      string
	Body       []byte
	ReceivedAt time.Time
	Attempts   int
}

// SaveTransaction stores the raw body of transaction txnID. It reports
// false if that txnID was stored before, in which case nothing changes:
// the homeserver retries a transaction until it sees a 200, and the
// retry must not be processed twice.
func (db *DB) SaveTransaction(ctx context.Context, txnID string, body []byte) (bool, error) {
	tag, err := db.Pool.Exec(ctx,
		`INSERT INTO appservice_transaction (txn_id, body) VALUES ($1, $2) ON CONFLICT (txn_id) DO NOTHING`,
		txnID, body)
	if err != nil {
		return false, fmt.Errorf("store transaction %s: %w", txnID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// LockProcessing takes the cross-instance processing lock for the rest of tx.
func LockProcessing(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, ProcessingLockKey); err != nil {
		return fmt.Errorf("take processing lock: %w", err)
	}
	return nil
}

// NextTransaction returns the oldest unprocessed transaction, or nil if
// there is none. Call it with the processing lock held.
func NextTransaction(ctx context.Context, tx pgx.Tx) (*StoredTransaction, error) {
	var st StoredTransaction
	err := tx.QueryRow(ctx, `SELECT seq, txn_id, body, received_at, attempts
		FROM appservice_transaction WHERE processed_at IS NULL
		ORDER BY seq LIMIT 1 FOR UPDATE`).Scan(&st.Seq, &st.TxnID, &st.Body, &st.ReceivedAt, &st.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("select next transaction: %w", err)
	}
	return &st, nil
}

// MarkProcessed records that the effects of transaction seq are in tx.
// problem is empty for a clean run and otherwise says what was skipped.
func MarkProcessed(ctx context.Context, tx pgx.Tx, seq int64, problem string) error {
	var lastError *string
	if problem != "" {
		lastError = &problem
	}
	_, err := tx.Exec(ctx, `UPDATE appservice_transaction
		SET processed_at = now(), attempts = attempts + 1, last_error = $2 WHERE seq = $1`, seq, lastError)
	if err != nil {
		return fmt.Errorf("mark transaction %d processed: %w", seq, err)
	}
	return nil
}

// RecordAttemptFailure notes a failed processing attempt outside the
// rolled-back processing transaction, so operators can see why a
// transaction is stuck.
func (db *DB) RecordAttemptFailure(ctx context.Context, seq int64, reason string) error {
	_, err := db.Pool.Exec(ctx, `UPDATE appservice_transaction
		SET attempts = attempts + 1, last_error = $2 WHERE seq = $1`, seq, reason)
	if err != nil {
		return fmt.Errorf("record failure of transaction %d: %w", seq, err)
	}
	return nil
}

// PendingTransactions counts stored transactions not yet processed.
func (db *DB) PendingTransactions(ctx context.Context) (int64, error) {
	var n int64
	err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM appservice_transaction WHERE processed_at IS NULL`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count pending transactions: %w", err)
	}
	return n, nil
}
