package database

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ProcessingLockKey is held (transaction-scoped) by whoever splits a
// stored transaction into work items. Splitting is serialised across
// instances so that items get their sequence numbers in arrival order,
// which is what keeps each queue in the homeserver's order. Tests also
// take it to hold processing back while intake keeps acknowledging.
const ProcessingLockKey int64 = 0x6d6c7361_0002 // "mlsa", 2

// StoredTransaction is one appservice transaction as received.
type StoredTransaction struct {
	Seq   int64
	TxnID string
	// Body is nil from NextTransaction: the intake hands the splitter
	// its parse of nearly every transaction (appservice.Handoff), and a
	// body of a hundred events, read out of TOAST for each, was PostgreSQL
	// time spent on bytes nobody read. TransactionBody reads it.
	Body       []byte
	ReceivedAt time.Time
	Attempts   int
}

// SaveTransaction stores the raw body of transaction txnID and reports
// whether it is new. The homeserver retries a transaction until it sees a
// 200, with the same body, and the retry must not be processed twice. A
// txnID seen before with a different body is a new transaction: Synapse
// on SQLite starts its txnIds again after a restart (DESIGN 3.1), and
// treating those as repeats would drop them. reused reports that case.
// seq is the new row's (zero if the transaction was not new).
func SaveTransaction(ctx context.Context, q Querier, txnID string, body []byte) (seq int64, inserted, reused bool, err error) {
	sum := sha256.Sum256(body)
	var stored *int64
	err = q.QueryRow(ctx, `WITH ins AS (
			INSERT INTO appservice_transaction (txn_id, body, body_sha256) VALUES ($1, $2, $3)
			ON CONFLICT (txn_id, body_sha256) DO NOTHING RETURNING seq)
		SELECT (SELECT seq FROM ins),
			EXISTS (SELECT 1 FROM appservice_transaction WHERE txn_id = $1 AND body_sha256 <> $3)`,
		txnID, body, sum[:]).Scan(&stored, &reused)
	if err != nil {
		return 0, false, false, fmt.Errorf("store transaction %s: %w", txnID, err)
	}
	if stored == nil {
		return 0, false, false, nil
	}
	return *stored, true, reused, nil
}

// TryLockProcessing takes the cross-instance splitting lock for the rest
// of tx if it is free, and reports whether it got it. An instance that
// does not get it has nothing to split: another one is splitting.
func TryLockProcessing(ctx context.Context, tx pgx.Tx) (bool, error) {
	got, err := tryLock(ctx, tx, ProcessingLockKey)
	if err != nil {
		return false, fmt.Errorf("take processing lock: %w", err)
	}
	return got, nil
}

// NextTransaction returns the oldest unsplit transaction without its
// body, or nil if there is none. Call it with the processing lock held.
func NextTransaction(ctx context.Context, tx Querier) (*StoredTransaction, error) {
	var st StoredTransaction
	err := tx.QueryRow(ctx, `SELECT seq, txn_id, received_at, attempts
		FROM appservice_transaction WHERE processed_at IS NULL
		ORDER BY seq LIMIT 1 FOR UPDATE`).Scan(&st.Seq, &st.TxnID, &st.ReceivedAt, &st.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("select next transaction: %w", err)
	}
	return &st, nil
}

// TransactionBody returns the stored body of transaction seq.
func TransactionBody(ctx context.Context, q Querier, seq int64) ([]byte, error) {
	var body []byte
	err := q.QueryRow(ctx, `SELECT body FROM appservice_transaction WHERE seq = $1`, seq).Scan(&body)
	if err != nil {
		return nil, fmt.Errorf("read body of transaction %d: %w", seq, err)
	}
	return body, nil
}

// MarkProcessed records that transaction seq was split into work items in tx.
// problem is empty for a clean run and otherwise says what was skipped.
func MarkProcessed(ctx context.Context, tx Querier, seq int64, problem string) error {
	var lastError *string
	if problem != "" {
		problem = errorText(problem)
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
func RecordAttemptFailure(ctx context.Context, q Querier, seq int64, reason string) error {
	_, err := q.Exec(ctx, `UPDATE appservice_transaction
		SET attempts = attempts + 1, last_error = $2 WHERE seq = $1`, seq, errorText(reason))
	if err != nil {
		return fmt.Errorf("record failure of transaction %d: %w", seq, err)
	}
	return nil
}

// PendingTransactions counts stored transactions not yet split.
func PendingTransactions(ctx context.Context, q Querier) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT count(*) FROM appservice_transaction WHERE processed_at IS NULL`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count pending transactions: %w", err)
	}
	return n, nil
}
