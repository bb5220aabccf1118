// Package codec implements the TLS presentation language as RFC 9420 uses it:
// fixed-width big-endian integers, opaque byte strings and vectors whose
// length is given by the MLS variable-length integer header (§2.1.2), and
// optional<T> values.
//
// Every MLS wire structure is built on this package, so it is deliberately
// strict: a decoder rejects non-minimal length headers, lengths larger than
// the remaining input, the reserved two-bit prefix 0b11, invalid optional
// markers and trailing bytes. Errors carry the name of the field that failed
// and the byte offset at which decoding stopped, because the data comes from
// untrusted peers and an operator must be able to tell what was wrong.
//
// The Reader keeps the first error it meets and turns every later read into a
// no-op, so that decoders read like the struct definitions they implement and
// check the error once at the end.
package codec
