package inbound

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Limits on what the homeserver sends. Matrix bounds identifiers and
// event types to 255 bytes; the others are ours and generous.
const (
	MaxIDBytes   = 255
	MaxTypeBytes = 255
	// MaxTextBytes bounds other short strings (membership, algorithm
	// names) that end up in indexed columns.
	MaxTextBytes = 255
	// MaxCount is the largest count a PostgreSQL integer column holds.
	MaxCount = math.MaxInt32
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid value")

// CheckText reports whether s can be stored as text: valid UTF-8, no
// NUL, at most limit bytes. field names s in the error.
func CheckText(field, s string, limit int) error {
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalid, field)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: %s contains a NUL", ErrInvalid, field)
	case len(s) > limit:
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrInvalid, field, len(s), limit)
	}
	return nil
}

// CheckID reports whether s is a Matrix identifier with the given sigil
// ('@' user, '!' room, '$' event) that can be stored.
func CheckID(field, s string, sigil byte) error {
	if s == "" {
		return fmt.Errorf("%w: no %s", ErrInvalid, field)
	}
	if s[0] != sigil {
		return fmt.Errorf("%w: %s %q does not start with %q", ErrInvalid, field, truncate(s), sigil)
	}
	if err := CheckText(field, s, MaxIDBytes); err != nil {
		return err
	}
	if sigil == '@' && !strings.Contains(s, ":") {
		return fmt.Errorf("%w: %s %q has no server name", ErrInvalid, field, s)
	}
	return nil
}

// CheckDeviceID reports whether s is a device ID that can be stored.
func CheckDeviceID(field, s string) error {
	if s == "" {
		return fmt.Errorf("%w: no %s", ErrInvalid, field)
	}
	return CheckText(field, s, MaxIDBytes)
}

// CheckCount reports whether n is a count an integer column holds.
func CheckCount(field string, n int64) error {
	if n < 0 || n > MaxCount {
		return fmt.Errorf("%w: %s %d is out of range 0..%d", ErrInvalid, field, n, MaxCount)
	}
	return nil
}

// truncate shortens s for an error message; the message must itself be
// storable, so invalid bytes are replaced.
func truncate(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", `\0`), "\uFFFD")
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return s
}
