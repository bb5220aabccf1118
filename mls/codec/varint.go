package codec

import "errors"

// MaxVarint is the largest value an MLS variable-length integer can hold
// (30 bits, RFC 9420 §2.1.2).
const MaxVarint = 1<<30 - 1

var (
	// ErrTruncated means the input ended inside a field.
	ErrTruncated = errors.New("input truncated")
	// ErrNonMinimalVarint means a length header used more bytes than needed.
	ErrNonMinimalVarint = errors.New("non-minimal variable-length integer")
	// ErrInvalidVarint means a length header used the reserved prefix 0b11.
	ErrInvalidVarint = errors.New("invalid variable-length integer prefix")
	// ErrLengthTooLarge means a declared length exceeds the remaining input
	// or the 30-bit limit.
	ErrLengthTooLarge = errors.New("declared length exceeds input")
	// ErrTrailingData means bytes were left over after a complete structure.
	ErrTrailingData = errors.New("trailing data")
	// ErrInvalidValue means a field held a value that the structure forbids,
	// such as an optional marker other than 0 or 1 or an unknown enum value.
	ErrInvalidValue = errors.New("invalid value")
)

// AppendVarint appends the minimal MLS variable-length encoding of v.
// It panics if v exceeds MaxVarint: callers encode lengths of values they
// built themselves, and a 1 GiB field is a programming error.
func AppendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, byte(v>>8)|0x40, byte(v))
	case v < 1<<30:
		return append(b, byte(v>>24)|0x80, byte(v>>16), byte(v>>8), byte(v))
	default:
		panic("codec: varint too large")
	}
}

// VarintLen returns the number of bytes AppendVarint uses for v.
func VarintLen(v uint64) int {
	switch {
	case v < 1<<6:
		return 1
	case v < 1<<14:
		return 2
	default:
		return 4
	}
}

// ParseVarint decodes one MLS variable-length integer from the start of b and
// returns its value and the number of bytes it took.
func ParseVarint(b []byte) (uint64, int, error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	prefix := b[0] >> 6
	if prefix == 3 {
		return 0, 0, ErrInvalidVarint
	}
	n := 1 << prefix
	if len(b) < n {
		return 0, 0, ErrTruncated
	}
	v := uint64(b[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	if VarintLen(v) != n {
		return 0, 0, ErrNonMinimalVarint
	}
	return v, n, nil
}
