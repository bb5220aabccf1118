// Package runloop owns the one loop shape that every background worker of
// the service shares: do a step of work; when there was work, do the next
// at once; when there was none, sleep until woken or until a poll interval
// passes; when the step failed, back off exponentially up to a bound.
//
// Work arrives from two directions: a wake-up from this process (intake
// stored a transaction, a handler enqueued an outgoing event) and work
// stored by another instance over the same database or left over by a
// crash, which only polling finds. The loop covers both without knowing
// what the work is.
package runloop
