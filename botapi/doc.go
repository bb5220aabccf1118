// Package botapi is the bots' own HTTP API (DESIGN 1, 3.5): puppets,
// their devices, DMLS rooms and messages as JSON under /v1, and delivery
// of what the puppets receive by server-sent events (GET /v1/events) or
// signed webhooks. It wraps the Go API of package groups and
// authenticates bots through package bots; it does no cryptography of
// its own beyond signing webhooks. openapi.json describes every route;
// docs/bots.md takes a bot author from token to first message.
//
// # Requests and errors
//
// A bot sends its token as Authorization: Bearer. Each bot has a token
// bucket (botapi.rate_limit, botapi.rate_burst, per instance); past it a
// request gets 429 with Retry-After. A bot acts only as the puppets it
// created: another bot's puppet is 403. Bodies are decoded strictly:
// unknown fields, wrong types, trailing data and bodies over
// botapi.max_body_bytes are refused, and every identifier is checked
// before it reaches groups or the homeserver. Every error is JSON
// ({"code", "message", "field"}) with a stable code; a client's mistake
// is always a 4xx naming the field, and 5xx means the service or the
// homeserver failed.
//
// # Resume
//
// groups keeps a log per puppet whose numbers follow commit order. A bot
// has many puppets, and one stream carries all of them, yet a stream
// resumes with a single Last-Event-ID. Two ways were weighed: an id that
// encodes every puppet's position (no extra writes, but it grows with
// the number of puppets, and is repeated in every event), and a log per
// bot into which the puppets' logs are merged (one more small row per
// event). This package does the latter, because an id must stay small
// for bots with thousands of puppets, and because a per-bot number is
// what a webhook receiver needs to deduplicate too.
//
// The merge (eventLog.fanIn) copies references to the new entries of a
// bot's puppets' logs into bot_event, numbering them after the bot's
// last number, while holding the row lock of the bot's cursor
// (bot_event_cursor), and records how far it copied each puppet
// (bot_fanin) in the same transaction. Numbers are therefore given in
// commit order, once, whichever instance copies; and since a puppet's
// log has no gap that a later commit fills, neither does the bot's. An
// event's id is its number in the bot's log; reading after N returns
// exactly what followed N, before or after a restart, on any instance.
// The content is not copied: it stays sealed in the puppet's log and is
// read from there.
//
// Merging runs on demand, not in a background loop: each bot with an
// open stream or a webhook in this instance has one feed (hub.go) that
// merges when one of its puppets receives something in this process
// (groups' Wait), when polled (botapi.poll: deliveries made by another
// instance), and when a stream or webhook starts. All of a bot's streams
// share its feed.
//
// # Webhooks
//
// A bot registers one URL (PUT /v1/webhook) and is given a secret, shown
// once and stored sealed. Each event of the bot's log after the
// webhook's position is POSTed, one at a time and in order, with the
// Event as the body and the headers
//
//	X-MLS-Event-ID: <event id>
//	X-MLS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>
//
// The position moves on only after a 2xx; a failure is retried after
// botapi.webhook_backoff, doubling up to botapi.webhook_max_backoff, and
// after botapi.webhook_attempts failures of one event the webhook is
// parked (GET /v1/webhook shows it, POST /v1/webhook/resume resumes it
// with that event). Order is the bot's log order, so per puppet it is
// the puppet's. Each attempt is signed with its own timestamp, so a
// receiver can refuse old deliveries (replays) whatever the retries.
// Delivery is at least once: if the service dies between the
// receiver's 2xx and recording it, that event is sent again, with the
// same X-MLS-Event-ID, which receivers use to drop repeats. A lease on
// the webhook's row keeps two instances from delivering it at once.
//
// Webhook URLs are the bot's choice and are called from the service's
// network: operators who let untrusted bots register should filter
// egress.
package botapi
