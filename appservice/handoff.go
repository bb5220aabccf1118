package appservice

import "sync"

// A Handoff passes the transactions the intake parsed to the splitter of
// the same process, so that a transaction is parsed once, not again when
// it is split: under load, decoding JSON was a fifth of the service's CPU
// time, and the splitter's second parse was two fifths of that.
//
// It is only a cache. The splitter parses what it does not find (stored
// by another instance, or before a restart, or evicted), and the result
// is the same, since parsing is deterministic and the stored body is the
// one parsed. Entries the splitter never takes are dropped oldest first
// once their bodies pass the budget.
type Handoff struct {
	mu     sync.Mutex
	budget int
	bytes  int
	bySeq  map[int64]handoffEntry
	// order holds the seqs put, oldest first; taken ones are removed
	// lazily, which keeps it short since the splitter takes in order.
	order []int64
}

type handoffEntry struct {
	txn  *Transaction
	size int
}

// handoffBudget bounds a service's Handoff: bodies of 4 MiB. Synapse sends
// an appservice one transaction at a time, so this is many; a burst the
// splitter lags behind (as the load command's intake mode sends) is
// parsed twice beyond it, rather than holding its parse in memory.
const handoffBudget = 4 << 20

// NewHandoff returns a Handoff that holds at most budget bytes of
// transaction bodies (at least the one just put).
func NewHandoff(budget int) *Handoff {
	return &Handoff{budget: budget, bySeq: map[int64]handoffEntry{}}
}

// put records txn, parsed from a body of size bytes stored as seq.
func (h *Handoff) put(seq int64, size int, txn *Transaction) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.bySeq[seq]; ok {
		return
	}
	h.bySeq[seq] = handoffEntry{txn: txn, size: size}
	h.order = append(h.order, seq)
	h.bytes += size
	for h.bytes > h.budget && len(h.order) > 1 {
		h.drop(h.order[0])
		h.order = h.order[1:]
	}
}

// take returns and forgets the transaction stored as seq, or nil.
func (h *Handoff) take(seq int64) *Transaction {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.bySeq[seq]
	if !ok {
		return nil
	}
	h.drop(seq)
	for len(h.order) > 0 {
		if _, ok := h.bySeq[h.order[0]]; ok {
			break
		}
		h.order = h.order[1:]
	}
	return e.txn
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
