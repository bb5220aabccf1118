// Package appservice is the Matrix side of the service: it receives the
// homeserver's transactions, stores them durably, processes them in
// order, and acts as puppet users and their devices.
//
// Intake and processing are split by PostgreSQL (DESIGN 3). The
// transaction endpoint stores the raw body keyed by txnId and answers 200
// only after the row is committed; a repeated txnId is acknowledged
// without a second row. mautrix-go's own appservice handler acknowledges
// before its handlers run and remembers only the last txnId, so this
// package owns the endpoint and uses mautrix only for types, the
// registration format and the client API.
//
// The Processor takes stored transactions one at a time in arrival order
// under a PostgreSQL advisory lock, so that several instances never
// process concurrently and every room sees its events in order. All
// effects of one transaction and its "processed" mark are committed in
// one database transaction: a crash at any point replays the whole
// transaction and never half of it. Splitting work into per-room queues
// is left for when MLS processing makes one global order too slow.
//
// Everything in a transaction body is untrusted. The parser accepts both
// the stable and the unstable (MSC2409, MSC3202) keys, prefers the stable
// one when both are present (Synapse sends both for ephemeral events), and
// skips a malformed element with a recorded problem instead of dropping
// the whole transaction.
//
// Puppets are users of the service's exclusive namespace. Their devices
// are created with MSC4190 (PUT /devices/{id} as the appservice), and
// requests are made as a device with ?user_id=&device_id= masquerading.
// mautrix caches one client per user, which cannot express two devices of
// one user, so Puppets keeps its own client per (user, device).
package appservice
