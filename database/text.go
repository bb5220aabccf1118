package database

import "strings"

// maxErrorBytes bounds the error texts stored with rows.
const maxErrorBytes = 4096

// errorText makes a free-form message storable in a text column: errors
// often quote what the homeserver sent, which may hold NUL bytes or
// invalid UTF-8 that PostgreSQL refuses (and an error that cannot be
// recorded would fail the very write that records it).
func errorText(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", `\x00`), "\uFFFD")
	if len(s) <= maxErrorBytes {
		return s
	}
	n := maxErrorBytes
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}
