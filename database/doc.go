// Package database owns the service's PostgreSQL access: the pgx pool,
// the migration runner, and the stores that read and write each table.
//
// Every store function takes a Querier, which is the pool or a
// transaction the caller holds, so that everything one work item changes
// is written in one database transaction (DESIGN 8) whichever stores it
// touches. The pool is the only shared resource; there is no
// package-level state.
//
// # Queues
//
// Inbound work items (work_item) and outgoing rows (outbox) wait on named
// queues (work_queue). A worker holds a queue with a transaction-level
// advisory lock on the queue's lock_key (ClaimQueue, LockQueue), never a
// row lock, so producers adding work are never blocked by a worker. Each
// queue row counts its unfinished entries; producers (Producer) and
// workers change the counter only in Flush, at the end of their
// transaction and in queue-name order, so that two transactions never
// wait for each other's queue rows in opposite orders. A counter that
// disagrees with its rows (an operator's hand edit) is recounted by
// RecountQueue when a worker finds it so.
//
// An outbox row may wait for earlier rows (outbox_dependency), each
// optionally filling a field of its content with that row's result: the
// event id of a room event or the content URI of a media upload. A row
// waits only for earlier rows, so waits never form a cycle, and a row
// given up on gives up the rows waiting for it.
//
// Timers (timer) are work due at a time, named by (kind, key) so that
// scheduling is idempotent; claiming one takes its row lock and, if it
// names a queue, that queue's lock.
//
// Free-form error texts are made storable (no NUL, valid UTF-8, bounded)
// before they are written, since they often quote what the homeserver
// sent. Connection errors name the host, port, database and user, never
// the password: they end up on an operator's terminal and in logs.
package database
