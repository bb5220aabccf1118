package groups

import (
	"container/list"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/group"
)

// staticCache keeps the decoded static parts of recently loaded epochs
// (group.Static), least recently used first out, within a budget of
// memory (groups.state_cache_bytes), estimated by staticCost.
//
// Every work item loads its room from PostgreSQL, and for a large room
// decoding the epoch's static part (the ratchet tree: parsing and hashing
// every node) was most of the cost of reading one message: 2.9 of 5 ms
// at 1,000 members. That part never changes once the epoch is made, so
// an entry needs no invalidation while the epoch exists: the key names
// the epoch, whose id is derived from its secrets. What does change (the
// init state, the secret tree, our devices' privates) is still read from
// the database each time, so a work item whose transaction rolls back
// leaves nothing stale here. An entry goes when its epoch is dropped
// (retention, or our last device removed from it), its secrets erased;
// one pushed out by the budget is left to the garbage collector, as a
// loaded epoch's state always was, since a work item may still be
// building a Public from it.
type staticCache struct {
	mu     sync.Mutex
	budget int
	used   int
	order  *list.List // of *staticEntry, most recently used first
	index  map[staticKey]*list.Element
}

type staticKey struct {
	room  id.RoomID
	epoch epochs.ID
}

type staticEntry struct {
	key    staticKey
	static *group.Static
}

// staticCost estimates the memory of a decoded static part from its
// encoded size: a decoded tree holds every node's hash and parsed keys
// besides the wire bytes. Measured (heap growth per decoded copy, suite
// 1, full trees): 3.8 times the encoding at 10 members, 4.9 at 1,000,
// 6.2 at 10,000.
func staticCost(st *group.Static) int { return 6 * st.Size() }

// newStaticCache returns a cache of at most budget bytes of memory (by
// staticCost); with a budget of 0 it keeps nothing.
func newStaticCache(budget int) *staticCache {
	return &staticCache{budget: budget, order: list.New(), index: map[staticKey]*list.Element{}}
}

// get returns the decoded static part of room's epoch, if kept.
func (c *staticCache) get(room id.RoomID, epoch epochs.ID) (*group.Static, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.index[staticKey{room, epoch}]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*staticEntry).static, true
}

// put keeps st for room's epoch, pushing out the least recently used
// entries past the budget. A part larger than the whole budget is not
// kept.
func (c *staticCache) put(room id.RoomID, epoch epochs.ID, st *group.Static) {
	if staticCost(st) > c.budget {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := staticKey{room, epoch}
	if e, ok := c.index[k]; ok {
		c.order.MoveToFront(e)
		return
	}
	c.index[k] = c.order.PushFront(&staticEntry{key: k, static: st})
	c.used += staticCost(st)
	for c.used > c.budget {
		last := c.order.Back()
		c.remove(last)
	}
}

// drop forgets room's epochs, erasing their secrets: they were dropped
// from the database.
func (c *staticCache) drop(room id.RoomID, dropped []epochs.ID) {
	if len(dropped) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, epoch := range dropped {
		if e, ok := c.index[staticKey{room, epoch}]; ok {
			e.Value.(*staticEntry).static.Destroy()
			c.remove(e)
		}
	}
}

func (c *staticCache) remove(e *list.Element) {
	entry := c.order.Remove(e).(*staticEntry)
	delete(c.index, entry.key)
	c.used -= staticCost(entry.static)
}

// len returns the number of entries kept.
func (c *staticCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
