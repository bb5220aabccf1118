// Package inbound holds what arrives from the homeserver as the service's
// handlers see it: validated room events, to-device events, device-list
// changes and key counts, the parsers that produce them, and the handler
// interfaces that consume them.
//
// It sits between intake and the MLS side (DESIGN 2): appservice parses
// transactions into these values and dispatches work items to handlers
// through the interfaces here; groups implements the handlers. Neither of
// the two imports the other.
//
// Everything here comes from the homeserver and is untrusted. A parser
// returns either a value that every store in the service accepts, or an
// error naming the field: no string holds a NUL or invalid UTF-8 or
// exceeds its limit, every identifier has its sigil, every number fits
// the column it goes to. PostgreSQL refuses NUL in text and integers out
// of range, and a value it refuses would fail its work item on every
// retry; catching it here turns a poisoned element into one skipped
// element with a recorded problem.
package inbound
