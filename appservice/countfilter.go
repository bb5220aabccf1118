package appservice

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mls-appservice/mls-appservice/inbound"
)

// keyCountRefresh is how long a device's key counts, passed on once, are
// not passed on again unchanged (up to half as long again, at random, so
// that the devices first seen together do not all come due together).
// The handlers act on a change (a count below low water, the fallback key
// handed out) and the keys package checks every device on its own timer
// besides, so a repeat only refreshes the record.
const keyCountRefresh = time.Hour

// countFilter passes on a device's MSC3202 key counts (one-time key
// counts, unused fallback key types) only when they differ from what it
// last passed on for that device, or that was keyCountRefresh or more
// ago.
//
// Synapse puts into every transaction the counts of every device of each
// of our users in the rooms of the transaction's events, and of the
// to-device recipients (synapse.appservice.scheduler,
// _compute_msc3202_otk_counts_and_fallback_keys). In a room of n of our
// puppets every event so brings n devices' counts, 3n with the hidden
// devices Synapse keeps for cross-signing keys, and a work item each made
// a room's traffic cost O(n) items per event: a room of 1,000 puppets
// filling up queued a million of them, and the room's own events waited
// behind them. Nearly all repeat the device's last counts.
//
// What it remembers is in memory, so a restart passes everything on once
// more. It is updated only when the split that passed a count commits
// (commit), and forgotten (reset) when the next transaction to split does
// not directly follow this instance's last: another instance may have
// split those in between, and what this one passed on last is then not
// necessarily the latest record. (A number is also skipped when the
// homeserver retries a stored transaction; that costs one pass of
// everything.)
type countFilter struct {
	mu      sync.Mutex
	now     func() time.Time
	refresh time.Duration
	last    int64 // the transaction this instance split last
	passed  map[deviceKey]passedCounts
	pending map[deviceKey]passedCounts
	skipped int // by the last pass
	pruned  time.Time
}

type passedCounts struct {
	counts inbound.KeyCounts
	until  time.Time
}

func newCountFilter(now func() time.Time, refresh time.Duration) *countFilter {
	return &countFilter{now: now, refresh: refresh, passed: map[deviceKey]passedCounts{}, pending: map[deviceKey]passedCounts{}}
}

// lastSplit returns the number of the transaction this instance split
// last, 0 if none.
func (f *countFilter) lastSplit() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// reset forgets every count passed on.
func (f *countFilter) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.passed)
	clear(f.pending)
}

// pass returns the counts of counts to queue, with their payloads, and
// holds them as pending until commit.
func (f *countFilter) pass(counts []inbound.KeyCounts) (out []inbound.KeyCounts, payloads [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	clear(f.pending)
	f.skipped = 0
	for _, k := range counts {
		// Compared as values, encoded only when passed on: in a room of
		// 10,000 of our devices every transaction brings all their
		// counts, and encoding each to compare was 6 % of the CPU.
		key := deviceKey{k.UserID, k.DeviceID}
		if p, ok := f.passed[key]; ok && p.counts.Equal(k) && now.Before(p.until) {
			f.skipped++
			continue
		}
		until := now.Add(f.refresh + rand.N(f.refresh/2+1))
		f.pending[key] = passedCounts{counts: k, until: until}
		out, payloads = append(out, k), append(payloads, k.Encode())
	}
	return out, payloads
}

// commit records what the last pass passed on, the split of transaction
// seq having committed, and returns how many counts it left out.
func (f *countFilter) commit(seq int64) (skipped int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, p := range f.pending {
		f.passed[k] = p
	}
	clear(f.pending)
	skipped, f.skipped = f.skipped, 0
	f.last = max(f.last, seq)
	// Entries past their refresh suppress nothing: drop them now and
	// then, so that devices gone for good are not kept for ever.
	if now := f.now(); now.Sub(f.pruned) >= f.refresh {
		for k, p := range f.passed {
			if !now.Before(p.until) {
				delete(f.passed, k)
			}
		}
		f.pruned = now
	}
	return skipped
}

// discard forgets the last pass: its split rolled back.
func (f *countFilter) discard() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.pending)
	f.skipped = 0
}

// len returns the number of devices whose counts are remembered.
func (f *countFilter) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.passed)
}
