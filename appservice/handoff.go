package appservice

import (
	"sync"
	"time"
)

// A Handoff passes the transactions the intake parsed to the splitter of
// the same process, so that a transaction is parsed once, not again when
// it is split: under load, decoding JSON was a fifth of the service's CPU
// time, and the splitter's second parse was two fifths of that.
//
// It is only a cache. The splitter parses what it does not find (stored
// by another instance, or before a restart, or not held), and the result
// is the same, since parsing is deterministic and the stored body is the
// one parsed.
//
// The splitters of all instances split in seq order, one at a time
// (database.NextTransaction), so the transactions a Handoff holds are
// needed oldest first. A transaction that does not fit in the budget is
// therefore not held, rather than evicting older ones: while the splitter
// lags behind a long burst, evicting the oldest would keep only the
// parses it reaches last. What the splitter has passed (split by another
// instance) is dropped when it takes a later seq, and what waits longer
// than handoffMaxAge, when another is put: nothing stays for a splitter
// that never comes.
type Handoff struct {
	mu     sync.Mutex
	budget int
	bytes  int
	bySeq  map[int64]handoffEntry
	// order holds the seqs put, in the order put (which is nearly seq
	// order); taken ones are removed lazily.
	order []int64
	now   func() time.Time
}

type handoffEntry struct {
	txn  *Transaction
	size int
	put  time.Time
}

// handoffBudget bounds a service's Handoff: bodies of 4 MiB. Synapse sends
// an appservice one transaction at a time, so this is many; a burst the
// splitter lags behind (as the load command's intake mode sends) is
// parsed twice beyond it, rather than holding its parse in memory.
const handoffBudget = 4 << 20

// handoffMaxAge is how long a parse waits for its splitter. A splitter
// that keeps up takes it within milliseconds; one that lags a minute
// behind has a backlog the budget no longer covers anyway.
const handoffMaxAge = time.Minute

// NewHandoff returns a Handoff that holds at most budget bytes of
// transaction bodies (or one transaction larger than that, when it holds
// no other).
func NewHandoff(budget int) *Handoff {
	return &Handoff{budget: budget, bySeq: map[int64]handoffEntry{}, now: time.Now}
}

// put records txn, parsed from a body of size bytes stored as seq.
func (h *Handoff) put(seq int64, size int, txn *Transaction) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.trim(func(e handoffEntry, _ int64) bool { return now.Sub(e.put) > handoffMaxAge })
	if _, ok := h.bySeq[seq]; ok || len(h.bySeq) > 0 && h.bytes+size > h.budget {
		return
	}
	h.bySeq[seq] = handoffEntry{txn: txn, size: size, put: now}
	h.order = append(h.order, seq)
	h.bytes += size
}

// take returns and forgets the transaction stored as seq, or nil.
func (h *Handoff) take(seq int64) *Transaction {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.bySeq[seq]
	h.drop(seq)
	// The splitter has passed the seqs before this one.
	h.trim(func(_ handoffEntry, s int64) bool { return s < seq })
	if !ok {
		return nil
	}
	return e.txn
}

// trim drops entries from the front of order while stale says so of them
// (or they were taken).
func (h *Handoff) trim(stale func(e handoffEntry, seq int64) bool) {
	for len(h.order) > 0 {
		s := h.order[0]
		if e, ok := h.bySeq[s]; ok && !stale(e, s) {
			return
		}
		h.drop(s)
		h.order = h.order[1:]
	}
}

func (h *Handoff) drop(seq int64) {
	if e, ok := h.bySeq[seq]; ok {
		h.bytes -= e.size
		delete(h.bySeq, seq)
	}
}

// len reports how many transactions are held (for tests).
func (h *Handoff) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bySeq)
}
