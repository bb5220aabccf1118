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
// messages, key uploads and media uploads. Queues are sent in parallel by
// several workers, each row of a queue after the one before it, under the
// same per-queue locks as inbound work (database.ClaimQueue), so several
// instances can share one outbox. A row may wait for earlier rows of other
// queues and take each one's result (an event id, a content URI) into a
// field of its content, nested fields included: a Welcome names its
// commit's event id, and an offloaded one also the content URI of its
// upload (ciphertext_file.url). Transaction ids are fixed when a row is
// written, so a send repeated after a crash is deduplicated by the
// homeserver; Synapse keeps that memory for 30 minutes and not across its
// own restarts (DESIGN 7), which bounds the guarantee. Media uploads have
// no transaction id: one repeated after a crash stores the bytes twice,
// and only the second copy is ever named.
//
// # Media
//
// Payloads too large for an event (DESIGN 6 "Size") are encrypted as
// Matrix attachments (package attachment), uploaded by a media_upload
// outbox row (POST /_matrix/media/v3/upload, application/octet-stream),
// and named by the event that waits for the upload. Uploads queue per
// device, not on the room's queue, so a large one delays only the events
// that need it. DownloadAttachment fetches through authenticated media
// (GET /_matrix/client/v1/media/download/{server}/{id}) as a puppet
// device: Synapse serves media uploaded since it enabled authenticated
// media only there, and fetches remote media over federation's
// authenticated endpoint. A download is bounded in size and time, retried
// for transient failures, and checked against the file object's hash
// before it is decrypted; its error names the reason (DownloadReason),
// and the mlsas_media_downloads_total metric counts results.
//
// A transient failure (network, 5xx, 429) keeps the row at the head of
// its queue and retries it with growing delays: a room's order matters
// more than its latency. A permanent one (the homeserver refused the
// request itself) gives the row up, records why, and lets the queue go on;
// rows that waited for it are given up too.
package matrix
