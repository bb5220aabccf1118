package codec

import (
	"encoding/binary"
	"fmt"
)

// DecodeError says which field failed to decode, where and why.
type DecodeError struct {
	Field  string // dotted field path, such as "key_package.leaf_node.signature"
	Offset int    // byte offset in the outermost input where the field starts
	Err    error  // one of the package's sentinel errors, or a caller's
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decode %s at byte %d: %v", e.Field, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Reader decodes an encoding. It remembers the first error and turns every
// later read into a no-op returning zero values; check Err or Finish once at
// the end.
type Reader struct {
	data []byte
	off  int // offset of data[0] in the outermost input, for error messages
	err  *DecodeError
	root *Reader // the outermost reader, which owns the sticky error
}

// NewReader returns a Reader over data.
func NewReader(data []byte) *Reader {
	r := &Reader{data: data}
	r.root = r
	return r
}

// Err returns the first error met, or nil.
func (r *Reader) Err() error {
	if r.root.err == nil {
		return nil
	}
	return r.root.err
}

// Empty reports whether all input has been consumed (or an error occurred).
func (r *Reader) Empty() bool { return r.root.err != nil || len(r.data) == 0 }

// Remaining returns the number of unread bytes.
func (r *Reader) Remaining() int { return len(r.data) }

// Offset returns the position of the next unread byte in the outermost input.
func (r *Reader) Offset() int { return r.off }

// Fail records err for field unless an earlier error is already recorded.
// Decoders call it for semantic errors, such as an unknown enum value.
func (r *Reader) Fail(field string, err error) {
	if r.root.err == nil {
		r.root.err = &DecodeError{Field: field, Offset: r.off, Err: err}
	}
}

// Finish returns the first error, or ErrTrailingData if unread bytes remain.
func (r *Reader) Finish(what string) error {
	if r.root.err == nil && len(r.data) != 0 {
		r.Fail(what, fmt.Errorf("%w: %d bytes", ErrTrailingData, len(r.data)))
	}
	return r.Err()
}

func (r *Reader) take(field string, n int) []byte {
	if r.root.err != nil {
		return nil
	}
	if n > len(r.data) {
		r.Fail(field, ErrTruncated)
		return nil
	}
	b := r.data[:n:n]
	r.data = r.data[n:]
	r.off += n
	return b
}

// Uint8 reads one byte.
func (r *Reader) Uint8(field string) uint8 {
	b := r.take(field, 1)
	if b == nil {
		return 0
	}
	return b[0]
}

// Uint16 reads a big-endian uint16.
func (r *Reader) Uint16(field string) uint16 {
	b := r.take(field, 2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

// Uint32 reads a big-endian uint32.
func (r *Reader) Uint32(field string) uint32 {
	b := r.take(field, 4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// Uint64 reads a big-endian uint64.
func (r *Reader) Uint64(field string) uint64 {
	b := r.take(field, 8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Bool reads a TLS bool; any byte other than 0 or 1 is an error.
func (r *Reader) Bool(field string) bool {
	v := r.Uint8(field)
	if v > 1 {
		r.Fail(field, fmt.Errorf("%w: bool %d", ErrInvalidValue, v))
		return false
	}
	return v == 1
}

// Optional reads the presence marker of an optional<T>.
func (r *Reader) Optional(field string) bool { return r.Bool(field) }

// Fixed reads exactly n bytes and returns a copy.
func (r *Reader) Fixed(field string, n int) []byte {
	b := r.take(field, n)
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func (r *Reader) length(field string) int {
	if r.root.err != nil {
		return 0
	}
	v, n, err := ParseVarint(r.data)
	if err != nil {
		r.Fail(field, err)
		return 0
	}
	r.data = r.data[n:]
	r.off += n
	if v > uint64(len(r.data)) {
		r.Fail(field, fmt.Errorf("%w: %d bytes declared, %d left", ErrLengthTooLarge, v, len(r.data)))
		return 0
	}
	return int(v)
}

// Opaque reads a variable-length vector of bytes and returns a copy. An
// empty vector decodes as a non-nil empty slice, so that encode(decode(x))
// round-trips whatever the caller does with nil.
func (r *Reader) Opaque(field string) []byte {
	n := r.length(field)
	b := r.take(field, n)
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// OpaqueString reads a variable-length vector of bytes as a string, with
// one allocation where Opaque and a conversion take two, and none if the
// bytes equal same, which it then returns: a caller decoding a sorted list
// whose neighbours often share a field passes the last one.
func (r *Reader) OpaqueString(field, same string) string {
	n := r.length(field)
	b := r.take(field, n)
	if string(b) == same {
		return same
	}
	return string(b)
}

// Vector reads a variable-length vector header and hands fn a Reader
// limited to the vector's content. fn is called once; if it leaves bytes
// unread, that is an error. Use Each for a vector of repeated elements.
func (r *Reader) Vector(field string, fn func(r *Reader)) {
	n := r.length(field)
	if r.root.err != nil {
		return
	}
	sub := &Reader{data: r.data[:n:n], off: r.off, root: r.root}
	r.data = r.data[n:]
	r.off += n
	fn(sub)
	if r.root.err == nil && len(sub.data) != 0 {
		sub.Fail(field, fmt.Errorf("%w: %d bytes inside vector", ErrTrailingData, len(sub.data)))
	}
}

// Each reads a variable-length vector and calls fn once per element until
// the vector's content is consumed. fn must consume at least one byte per
// call; a call that consumes nothing stops decoding with an error.
func (r *Reader) Each(field string, fn func(r *Reader)) {
	r.Vector(field, func(sub *Reader) {
		for !sub.Empty() {
			before := len(sub.data)
			fn(sub)
			if sub.root.err == nil && len(sub.data) == before {
				sub.Fail(field, fmt.Errorf("%w: empty element", ErrInvalidValue))
			}
		}
	})
}
