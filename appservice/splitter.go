package appservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// Splitter turns stored transactions into work items (DESIGN 3.2), one
// transaction at a time in arrival order, each in one database
// transaction with its "split" mark. Splitting is serialised across
// instances by an advisory lock, so items are numbered in the
// homeserver's order and each queue keeps it.
type Splitter struct {
	db          *database.DB
	metrics     *Metrics
	log         zerolog.Logger
	maxAttempts int
	// Split, if set, is called after each split transaction (wakes workers).
	Split func()
	// Handoff, if set, holds transactions the intake parsed, which are
	// not parsed again.
	Handoff *Handoff
	counts  *countFilter
}

// NewSplitter returns a splitter over db.
func NewSplitter(db *database.DB, metrics *Metrics, maxAttempts int, log zerolog.Logger) *Splitter {
	return &Splitter{db: db, metrics: metrics, log: log, maxAttempts: max(maxAttempts, 1), Split: func() {},
		counts: newCountFilter(time.Now, keyCountRefresh)}
}

// Step splits the oldest unsplit transaction, if any, and reports whether
// there was one.
func (s *Splitter) Step(ctx context.Context) (bool, error) {
	var current *database.StoredTransaction
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		got, err := database.TryLockProcessing(ctx, tx)
		if err != nil || !got {
			return err
		}
		st, err := database.NextTransaction(ctx, tx)
		if err != nil || st == nil {
			return err
		}
		current = st
		if last := s.counts.lastSplit(); last != 0 && st.Seq != last+1 {
			// Another instance may have split those in between (or
			// they were never stored: a retry's number).
			s.counts.reset()
		}
		p := database.NewProducer(tx)
		problem, err := s.split(ctx, tx, p, st)
		if err != nil {
			return err
		}
		if err := database.MarkProcessed(ctx, tx, st.Seq, problem); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	if current == nil {
		return false, err
	}
	if err != nil {
		s.counts.discard()
		if ctx.Err() != nil {
			return true, nil
		}
		return true, s.failed(ctx, current, err)
	}
	s.metrics.TransactionsSplit.Inc()
	s.metrics.KeyCountsUnchanged.Add(float64(s.counts.commit(current.Seq)))
	s.Split()
	return true, nil
}

// failed records a failed split. Splitting writes only validated values,
// so a failure is the database's; a transaction that fails max attempts
// times is set aside, marked split with its error, rather than holding
// back every transaction after it for ever.
func (s *Splitter) failed(ctx context.Context, st *database.StoredTransaction, cause error) error {
	ctx = context.WithoutCancel(ctx)
	log := s.log.With().Str("txn_id", st.TxnID).Int64("txn_seq", st.Seq).Int("attempt", st.Attempts+1).Logger()
	if err := database.RecordAttemptFailure(ctx, s.db, st.Seq, cause.Error()); err != nil {
		log.Error().Err(err).Msg("Recording splitting failure failed")
	}
	if st.Attempts+1 < s.maxAttempts {
		return fmt.Errorf("split transaction %s: %w", st.TxnID, cause)
	}
	log.Error().Err(cause).Msg("Transaction failed to split too often; setting it aside unprocessed")
	s.metrics.ItemsParked.WithLabelValues("transaction").Inc()
	if err := database.MarkProcessed(ctx, s.db, st.Seq, "set aside after failing to split: "+cause.Error()); err != nil {
		return fmt.Errorf("set aside transaction %s: %w", st.TxnID, err)
	}
	return nil
}

// split writes the work items of one transaction into p and returns the
// problems to record with it (empty if none). The transaction's body is
// read through q only if the intake's parse is not in the handoff.
func (s *Splitter) split(ctx context.Context, q database.Querier, p *database.Producer, st *database.StoredTransaction) (string, error) {
	log := s.log.With().Str("txn_id", st.TxnID).Int64("txn_seq", st.Seq).Logger()
	txn := s.Handoff.take(st.Seq)
	var err error
	if txn == nil {
		s.metrics.HandoffTaken.WithLabelValues("missed").Inc()
		if st.Body == nil {
			if st.Body, err = database.TransactionBody(ctx, q, st.Seq); err != nil {
				return "", err
			}
		}
		txn, err = ParseTransaction(st.Body)
	} else {
		s.metrics.HandoffTaken.WithLabelValues("parsed").Inc()
	}
	if err != nil {
		// It passed intake, so only a parser change can bring us here;
		// retrying cannot help.
		s.metrics.MalformedItems.Inc()
		log.Error().Err(err).Msg("Stored transaction cannot be parsed; marking it split without items")
		return "unparsable: " + err.Error(), nil
	}
	for _, prob := range txn.Problems {
		s.metrics.MalformedItems.Inc()
		log.Warn().Err(prob).Msg("Skipped malformed element of transaction")
	}
	var items []database.Item
	for _, ev := range txn.Events {
		items = append(items, database.Item{Queue: inbound.RoomQueue(ev.RoomID), Kind: inbound.KindRoomEvent,
			RoomID: string(ev.RoomID), EventID: string(ev.EventID), Payload: ev.Raw})
	}
	for _, ev := range txn.Ephemeral {
		queue := inbound.EphemeralQueue
		if ev.RoomID != "" {
			queue = inbound.RoomQueue(ev.RoomID)
		}
		items = append(items, database.Item{Queue: queue, Kind: inbound.KindEphemeral, RoomID: string(ev.RoomID), Payload: ev.Raw})
	}
	for _, ev := range txn.ToDevice {
		items = append(items, database.Item{Queue: inbound.DeviceQueue(ev.ToUserID, ev.ToDeviceID), Kind: inbound.KindToDevice,
			Payload: ev.Raw})
	}
	for _, c := range txn.DeviceLists {
		items = append(items, database.Item{Queue: inbound.UserQueue(c.UserID), Kind: inbound.KindDeviceList, Payload: c.Encode()})
	}
	counts, payloads := s.counts.pass(txn.KeyCounts)
	for i, k := range counts {
		items = append(items, database.Item{Queue: inbound.DeviceQueue(k.UserID, k.DeviceID), Kind: inbound.KindKeyCounts,
			Payload: payloads[i]})
	}
	for i := range items {
		items[i].TxnSeq = st.Seq
	}
	if _, err := p.AddItems(ctx, items); err != nil {
		return "", err
	}
	for _, it := range items {
		s.metrics.ItemsQueued.WithLabelValues(it.Kind).Inc()
	}
	if len(txn.Problems) > 0 {
		return fmt.Sprintf("skipped %d malformed elements: %v", len(txn.Problems), errors.Join(txn.Problems...)), nil
	}
	return "", nil
}
