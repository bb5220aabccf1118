// Package appservice is the homeserver's side of the conversation towards
// us (DESIGN 2): it receives the homeserver's transactions, stores them
// durably, splits them into work items on per-room and per-device queues,
// and applies the items through handlers that it knows only by the
// interfaces of package inbound. It never imports the MLS side, which
// implements those handlers (groups), nor what calls the homeserver
// (matrix).
//
// # Intake
//
// The transaction endpoint checks the homeserver's token in constant
// time, refuses a txnId that is not valid UTF-8 or holds a NUL (400),
// bounds the bytes of bodies in flight (503 beyond the bound, so the
// homeserver sends the transaction again later), parses the body, stores
// it, and answers 200 only after the row is committed. A txnId seen
// before with the same body (compared by SHA-256) is the homeserver
// retrying and is acknowledged without a second row; with a different
// body it is a new transaction, because Synapse on SQLite starts its
// txnIds again after a restart, and taking those for repeats would drop
// them.
//
// # Splitting and queues
//
// The Splitter turns each stored transaction into work items in one
// database transaction with its "split" mark, in arrival order, under an
// advisory lock that serialises splitting across instances: item numbers
// follow the homeserver's order. Room events (and ephemeral events that
// name a room) go on the room's queue; to-device messages and key counts
// on the receiving device's queue; device-list changes on the user's
// queue (inbound.RoomQueue and friends). A device's key counts are
// queued only when they differ from the last ones queued for it (or an
// hour later): Synapse repeats every puppet's counts in each transaction
// of its room, which made a room of n puppets cost n items an event
// (countFilter). The intake's parse of a
// transaction reaches the splitter of its process through a Handoff, so
// that it is not parsed again; a transaction stored by another instance
// or before a restart is parsed from its stored body.
//
// Workers claim a due queue with a transaction-level advisory lock (the
// queue row is never locked, so producers are never held up by a worker's
// handler) and apply up to a batch of its items in order, each in a
// savepoint, committing the items' effects and their removal together. Any
// number of workers in any number of instances share the queues: a room
// is applied by one worker at a time, strictly in order, while different
// rooms run in parallel. A queue that still has items after a batch goes
// to the back of the line, so a busy room does not starve the others.
//
// Within a batch, consecutive room events that every room handler can
// take together (inbound.RoomRunHandler; for groups, a busy room's
// messages) are given to the handlers as one run, in one savepoint: the
// room is read and written once for the run instead of once an event. A
// run is only a shortcut: if a handler declines it or fails, the run is
// rolled back and its events are applied one by one as above, so each
// event is decided, retried or parked exactly as without runs
// (mlsas_work_run_events_total counts the events of both outcomes).
//
// # Poison
//
// Everything in a transaction is untrusted. The parser (package inbound)
// checks every string for NUL, invalid UTF-8 and length, every identifier
// for its sigil, every number for its column's range, so no value reaches
// a write that PostgreSQL would refuse; a bad element is skipped and
// recorded as a problem of its transaction, and the rest goes on.
//
// An item whose handler still fails is retried with exponential backoff;
// its queue waits meanwhile, since a room's order matters. After
// processing.max_attempts failures (at once for inbound.ErrPermanent, a
// payload that no longer parses, or a panic that keeps recurring) the
// item is parked: a log line with its queue, room and event, a metric,
// and a row that `mls-appservice queue list|retry|drop` shows and acts
// on. Parking frees its queue: the room's later items are applied without
// it. We chose that over holding the room until an operator acts because
// MLS state recovers a missed event by backfill along commit_event
// (DESIGN 5), while a held room stops every member's messages; nothing
// outside the room ever waits for it.
//
// # Timers, readiness, retention
//
// Timers are rows with a due time (DESIGN 3.6), claimed like queues; one
// that names a queue runs under its lock. Retention is such a timer: it
// deletes split transactions and recorded events older than
// processing.retention in batches. /_matrix/mau/ready answers 503 while
// the database does not answer or the oldest unfinished inbound work is
// older than processing.ready_backlog; gauges of the backlog (queue
// depth, oldest item, parked items, outbox) are sampled every 5 s.
//
// mautrix-go's own appservice handler acknowledges before its handlers
// run and remembers only the last txnId, so this package owns the
// endpoint and uses mautrix only for identifier types.
package appservice
