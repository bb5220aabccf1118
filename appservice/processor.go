package appservice

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/database"
)

// Processor applies stored transactions in arrival order.
type Processor struct {
	db      *database.DB
	metrics *Metrics
	log     zerolog.Logger
	wake    chan struct{}
	// poll bounds how long a transaction stored by another instance, or
	// left over by a crash, waits when nobody wakes this processor.
	poll time.Duration
}

// NewProcessor returns a processor over db.
func NewProcessor(db *database.DB, metrics *Metrics, log zerolog.Logger) *Processor {
	return &Processor{db: db, metrics: metrics, log: log, wake: make(chan struct{}, 1), poll: 2 * time.Second}
}

// Wake tells the processor that a transaction was stored. It never blocks.
func (p *Processor) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run processes transactions until ctx is done. A failing transaction is
// retried with growing delays and holds back the ones after it: skipping
// it would apply later room events before earlier ones.
func (p *Processor) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		did, err := p.ProcessNext(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			backoff = min(max(2*backoff, 500*time.Millisecond), time.Minute)
			p.log.Error().Err(err).Dur("retry_in", backoff).Msg("Processing transaction failed")
		case did:
			backoff = 0
			continue
		default:
			backoff = p.poll
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-p.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// ProcessNext processes the oldest unprocessed transaction, if any, and
// reports whether there was one.
func (p *Processor) ProcessNext(ctx context.Context) (bool, error) {
	start := time.Now()
	var current *database.StoredTransaction
	err := p.db.InTx(ctx, func(tx pgx.Tx) error {
		if err := database.LockProcessing(ctx, tx); err != nil {
			return err
		}
		st, err := database.NextTransaction(ctx, tx)
		if err != nil || st == nil {
			return err
		}
		current = st
		problem, err := p.apply(ctx, tx, st)
		if err != nil {
			return err
		}
		return database.MarkProcessed(ctx, tx, st.Seq, problem)
	})
	if current == nil {
		return false, err
	}
	if err != nil {
		p.metrics.TransactionsFailed.Inc()
		// The effects were rolled back; note the attempt on its own.
		if rerr := p.db.RecordAttemptFailure(context.WithoutCancel(ctx), current.Seq, err.Error()); rerr != nil {
			p.log.Error().Err(rerr).Msg("Recording processing failure failed")
		}
		return true, fmt.Errorf("process transaction %s: %w", current.TxnID, err)
	}
	p.metrics.TransactionsProcessed.Inc()
	p.metrics.ProcessingSeconds.Observe(time.Since(start).Seconds())
	p.metrics.QueueDelaySeconds.Observe(time.Since(current.ReceivedAt).Seconds())
	return true, nil
}

// apply writes the effects of one transaction into tx. A body that
// cannot be parsed at all (it passed intake, so only a parser change can
// cause this) is marked processed with the reason rather than retried
// for ever, since retrying cannot help.
func (p *Processor) apply(ctx context.Context, tx pgx.Tx, st *database.StoredTransaction) (string, error) {
	log := p.log.With().Str("txn_id", st.TxnID).Int64("txn_seq", st.Seq).Logger()
	txn, err := ParseTransaction(st.Body)
	if err != nil {
		p.metrics.TransactionsFailed.Inc()
		log.Error().Err(err).Msg("Stored transaction cannot be parsed; marking it processed without effects")
		return "unparsable: " + err.Error(), nil
	}
	for _, prob := range txn.Problems {
		p.metrics.MalformedItems.Inc()
		log.Warn().Err(prob).Msg("Skipped malformed element of transaction")
	}
	if err := p.dispatch(ctx, tx, st.Seq, txn); err != nil {
		return "", err
	}
	if len(txn.Problems) > 0 {
		return fmt.Sprintf("skipped %d malformed elements: %v", len(txn.Problems), errors.Join(txn.Problems...)), nil
	}
	return "", nil
}

// dispatch splits a transaction into room events (grouped per room, in
// order), ephemeral events, to-device events, device-list changes and
// key counts, and records each.
func (p *Processor) dispatch(ctx context.Context, tx pgx.Tx, txnSeq int64, txn *Transaction) error {
	var rooms []string
	byRoom := map[string][]RoomEvent{}
	for _, ev := range txn.Events {
		r := string(ev.RoomID)
		if _, ok := byRoom[r]; !ok {
			rooms = append(rooms, r)
		}
		byRoom[r] = append(byRoom[r], ev)
	}
	for _, room := range rooms {
		for _, ev := range byRoom[room] {
			if err := p.roomEvent(ctx, tx, txnSeq, ev); err != nil {
				return err
			}
		}
	}
	for _, ev := range txn.Ephemeral {
		err := database.RecordEvent(ctx, tx, txnSeq, database.InboundEvent{Kind: "ephemeral", Type: ev.Type,
			RoomID: string(ev.RoomID), Raw: ev.Raw})
		if err != nil {
			return err
		}
		p.metrics.ItemsDispatched.WithLabelValues("ephemeral").Inc()
	}
	for _, ev := range txn.ToDevice {
		err := database.RecordEvent(ctx, tx, txnSeq, database.InboundEvent{Kind: "to_device", Type: ev.Type,
			Sender: string(ev.Sender), ToUserID: string(ev.ToUserID), ToDeviceID: string(ev.ToDeviceID), Raw: ev.Raw})
		if err != nil {
			return err
		}
		p.metrics.ItemsDispatched.WithLabelValues("to_device").Inc()
	}
	for _, u := range txn.DeviceLists.Changed {
		if err := database.RecordDeviceListChange(ctx, tx, txnSeq, string(u), "changed"); err != nil {
			return err
		}
		p.metrics.ItemsDispatched.WithLabelValues("device_list").Inc()
	}
	for _, u := range txn.DeviceLists.Left {
		if err := database.RecordDeviceListChange(ctx, tx, txnSeq, string(u), "left"); err != nil {
			return err
		}
		p.metrics.ItemsDispatched.WithLabelValues("device_list").Inc()
	}
	// Map order is random; sort so that replays write rows in one order
	// and concurrent writers cannot deadlock on row locks.
	for _, u := range sortedKeys(txn.OneTimeKeyCounts) {
		for _, d := range sortedKeys(txn.OneTimeKeyCounts[u]) {
			for _, alg := range sortedKeys(txn.OneTimeKeyCounts[u][d]) {
				if err := database.SetKeyCount(ctx, tx, txnSeq, string(u), string(d), alg, txn.OneTimeKeyCounts[u][d][alg]); err != nil {
					return err
				}
				p.metrics.ItemsDispatched.WithLabelValues("otk_count").Inc()
			}
		}
	}
	for _, u := range sortedKeys(txn.UnusedFallbackKeyTypes) {
		for _, d := range sortedKeys(txn.UnusedFallbackKeyTypes[u]) {
			if err := database.SetUnusedFallbackKeyTypes(ctx, tx, txnSeq, string(u), string(d), txn.UnusedFallbackKeyTypes[u][d]); err != nil {
				return err
			}
			p.metrics.ItemsDispatched.WithLabelValues("fallback_keys").Inc()
		}
	}
	return nil
}

func (p *Processor) roomEvent(ctx context.Context, tx pgx.Tx, txnSeq int64, ev RoomEvent) error {
	err := database.RecordEvent(ctx, tx, txnSeq, database.InboundEvent{Kind: "room", Type: ev.Type,
		RoomID: string(ev.RoomID), EventID: string(ev.EventID), Sender: string(ev.Sender), Raw: ev.Raw})
	if err != nil {
		return err
	}
	if ev.Type == "m.room.member" {
		if err := database.SetMembership(ctx, tx, string(ev.RoomID), *ev.StateKey, ev.Membership, string(ev.EventID)); err != nil {
			return err
		}
	}
	p.metrics.ItemsDispatched.WithLabelValues("room_event").Inc()
	return nil
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
