package groups

import (
	"sync"
	"time"

	"maunium.net/go/mautrix/id"
)

// roomTimes keeps one time per room, such as when the room was last
// reconciled, for decisions that only look back a short while (keep). It
// forgets the times older than keep once it holds roomTimesLimit rooms, so
// it stays bounded however many rooms a long-running service sees.
type roomTimes struct {
	keep time.Duration
	mu   sync.Mutex
	at   map[id.RoomID]time.Time
}

const roomTimesLimit = 4096

func newRoomTimes(keep time.Duration) *roomTimes {
	return &roomTimes{keep: keep, at: map[id.RoomID]time.Time{}}
}

// last returns the room's time, if it has one.
func (t *roomTimes) last(room id.RoomID) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.at[room]
	return at, ok
}

// mark sets the room's time to at.
func (t *roomTimes) mark(room id.RoomID, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.set(room, at)
}

// markUnlessWithin sets the room's time to at and reports true, unless the
// room's time is less than keep before at (then it reports false and
// changes nothing): one decision per keep, however many ask at once.
func (t *roomTimes) markUnlessWithin(room id.RoomID, at time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.at[room]; ok && at.Sub(last) < t.keep {
		return false
	}
	t.set(room, at)
	return true
}

func (t *roomTimes) set(room id.RoomID, at time.Time) {
	if _, ok := t.at[room]; !ok && len(t.at) >= roomTimesLimit {
		for r, last := range t.at {
			if at.Sub(last) >= t.keep {
				delete(t.at, r)
			}
		}
	}
	t.at[room] = at
}
