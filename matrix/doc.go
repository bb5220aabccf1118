// Package matrix owns everything that calls the homeserver (DESIGN 2):
// puppet users and their devices, requests made as a puppet device, and
// the outbox sender that delivers what the service decided to send.
//
// Puppets are users of the service's exclusive namespace. Their devices
// are created with MSC4190 (PUT /devices/{id} as the appservice), and
// requests are made as a device with ?user_id=&device_id= masquerading.
// mautrix caches one client per user, which cannot express two devices of
// one user, so Puppets keeps its own client per (user, device).
//
// The Sender delivers outbox rows (DESIGN 3.4). Each row belongs to a
// queue: the room for room events, the acting device for to-device
// messages and key uploads. Queues are sent in parallel by several
// workers, each row of a queue after the one before it, under the same
// per-queue locks as inbound work (database.ClaimQueue), so several
// instances can share one outbox. A row may wait for an earlier row of
// another queue (a Welcome for its commit) and take that row's event id
// into a field of its content. Transaction ids are fixed when a row is
// written, so a send repeated after a crash is deduplicated by the
// homeserver; Synapse keeps that memory for 30 minutes and not across its
// own restarts (DESIGN 7), which bounds the guarantee.
//
// A transient failure (network, 5xx, 429) keeps the row at the head of
// its queue and retries it with growing delays: a room's order matters
// more than its latency. A permanent one (the homeserver refused the
// request itself) gives the row up, records why, and lets the queue go on;
// rows that waited for it are given up too.
package matrix
