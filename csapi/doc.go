// Package csapi is the Matrix client-server façade (DESIGN 1): a bot
// written for any Matrix SDK (matrix-nio, matrix-bot-sdk, mautrix,
// matrix-rust-sdk), with the SDK's own encryption off, points its
// homeserver URL at this listener instead of the homeserver, and its
// rooms are DMLS-encrypted without one line changed, as pantalaimon does
// for Megolm. The service does all cryptography; the bot sees plaintext.
//
// A bot authenticates with an access token of one puppet device
// (mls-appservice bots token BOT PUPPET, or the bot API), sent as
// Authorization: Bearer (matrix-nio 0.26 and matrix-bot-sdk 0.8 do) or
// as the deprecated access_token query parameter (older clients, media
// links). Tokens are stored as hashes and checked in constant time by
// package bots; none is ever logged (request logs name the route and
// path, never the query).
//
// # What the façade serves itself
//
// Only what encryption changes, under r0 and v3 (what the SDKs call),
// and under unstable and api/v1, where Synapse serves sends and /sync
// too (passed through, they would let plaintext into a DMLS room):
//
//   - PUT /rooms/{room}/send/{type}/{txn} (and POST without {txn},
//     which Synapse still takes) in a DMLS room: groups.Send
//     encrypts the event in the room's base epoch and the outbox sends it
//     as the puppet's device; the answer is the encrypted event's id.
//     The transaction id is idempotent per device and room (csapi_txn,
//     and groups' idempotency key). A device that has just joined waits
//     (csapi.send_wait) for its Welcome. In other rooms the request
//     passes through. A room is DMLS if groups knows it or its create
//     event says so: a plaintext send never reaches a DMLS room because
//     groups had not seen it yet.
//   - GET /sync, /rooms/{room}/messages, /rooms/{room}/context/{event},
//     /rooms/{room}/event/{event}: the homeserver's answer, masqueraded,
//     with each m.room.encrypted DMLS event replaced by what groups
//     delivered to the puppet (events.go says how, and how an answer is
//     held for an event not decrypted yet); DMLS to-device messages
//     (Welcomes) are left out of /sync.
//   - POST /createRoom: the bot's request with the DMLS creation_content
//     added (csapi.create_rooms: every room, or those that ask for
//     encryption), so that presets, initial state and power levels stay
//     the bot's.
//   - POST /user/{user}/filter (and inline filters): widened so that
//     m.room.encrypted gets through a filter listing event types.
//   - GET /account/whoami (the token's puppet and device), POST /logout
//     (revokes the token), GET /login (no flows), GET
//     /.well-known/matrix/client (this listener: csapi.public_url).
//
// Invites, joins, leaves and kicks pass through: groups sees their
// events come back and turns them into commits.
//
// # What passes through
//
// Everything else (profiles, account data, state, typing, receipts,
// presence, media, redactions, room directory) goes to the homeserver
// unchanged as the puppet's device: proxy.go drops the bot's
// token and any identity it put in the query and adds the appservice's
// token with user_id and device_id (masquerading, MSC4190). Bodies
// stream both ways, bounded by csapi.max_upload_bytes. State events and
// redactions are not encrypted in DMLS rooms, as in Megolm ones.
//
// # What is refused
//
// Endpoints that would break what the service manages for the puppet, or
// give encrypted events around the rewriting, answer 404 M_UNRECOGNIZED
// (what the spec says for an endpoint a server does not offer), so an
// SDK takes the feature as unsupported: key upload, claim and
// cross-signing uploads (they would replace the device's MLS identity or
// spend its KeyPackages), key backup, deleting devices, /logout/all,
// passwords, deactivation, refresh and login tokens, the deprecated
// /events and /initialSync, and sliding sync (MSC3575, MSC4186), which
// would give encrypted events undecrypted; /versions is the homeserver's
// answer with sliding sync's unstable features turned off (versions.go),
// so that an SDK does not try it first. Password login answers 400
// M_UNKNOWN and registration 403 M_FORBIDDEN, as for a server that
// offers neither. A malformed request (room id, event type, transaction
// id, body) gets a 4xx with an errcode, never a 5xx; an answer of the
// homeserver the façade cannot read is a 502.
//
// # Limits
//
// Event types inside a DMLS message are encrypted, m.relates_to too, so
// the homeserver cannot aggregate relations or threads of DMLS messages:
// /relations and /threads pass through and list nothing useful. Filters
// made through the façade are widened, not re-applied after decryption.
// Groups joins puppets to rooms by itself when groups.autojoin says so;
// with bots that decide for themselves, set it to off. Synapse answers a
// restarted client's first /sync with the answer it cached for the same
// since token (its stopped long-poll's), which may end before events sent
// while the client was down: they come in the /sync after.
//
// # Tests
//
// The rewriting rules are tested here against deliveries held in memory;
// cmd/mls-appservice's TestCSAPISDKBots runs the real thing: a
// matrix-nio and a matrix-bot-sdk bot (testdata/, pinned, with their
// SDKs' encryption off) on a real Synapse and PostgreSQL, and checks
// through Synapse's admin API that no plaintext of theirs reached it.
package csapi
