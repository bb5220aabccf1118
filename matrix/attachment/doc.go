// Package attachment encrypts and decrypts payloads in the format of
// Matrix's encrypted attachments (client-server API, "Sending encrypted
// attachments"), which DESIGN 6 ("Size") uses for commits, Welcomes and
// GroupInfos too large for an event: the payload goes to the media
// repository and the event carries the file object that finds, checks and
// opens it.
//
// # Format
//
// A payload is encrypted with AES-256-CTR under a fresh random key. The
// 128-bit initial counter block has 64 random high bits and 64 zero low
// bits (protocol version "v2"): the low half is the block counter, which
// then cannot wrap within any payload. The file object is
//
//	{"url": "mxc://<server name>/<media id>",
//	 "key": {"kty": "oct", "key_ops": ["encrypt", "decrypt"], "alg": "A256CTR",
//	         "k": <key, unpadded base64url>, "ext": true},
//	 "iv": <counter block, unpadded base64>,
//	 "hashes": {"sha256": <SHA-256 of the ciphertext, unpadded base64>},
//	 "v": "v2"}
//
// # What it protects
//
// The file object travels in the event, so whoever can read the event can
// open the payload: the encryption adds no secrecy towards the homeserver
// beyond what MLS gives the payload itself. What matters is the hash. The
// event pins the exact ciphertext, so a media repository (ours, or a
// remote one over federation) that serves other bytes is caught before
// anything is decrypted, and every member that accepts the event
// processes the same payload.
//
// # Parsing
//
// A file object comes from other devices, so Parse checks everything
// before a download is even attempted: version v2, the key's type,
// algorithm, operations, extractability and length, the counter block's
// length, the hash's presence and length, and the content URI's shape.
// Binary values must be unpadded and canonical (the spec's encoding): one
// file object has one spelling. Duplicate keys in any object are refused,
// because JSON parsers disagree on which copy wins, and a file object that
// two members read differently would let a sender show them different
// payloads under one event. Unknown fields are ignored, as the spec
// allows. Every refusal is a *FormatError naming the field, and matches
// ErrBadFile.
//
// A File holds its key; String and GoString leave it out, so printing a
// File or logging it with %v never shows the key. Its JSON (MarshalJSON)
// is the wire format and does include it.
//
// The package is pure: no I/O, no configuration, no global state. Package
// matrix uploads (through the outbox) and downloads (authenticated media).
package attachment
