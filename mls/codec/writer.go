package codec

import "encoding/binary"

// Writer builds an encoding. The zero value is ready to use.
type Writer struct {
	buf []byte
}

// NewWriter returns a Writer whose buffer starts with the given capacity.
func NewWriter(capacity int) *Writer {
	return &Writer{buf: make([]byte, 0, capacity)}
}

// Bytes returns the encoding built so far. The Writer keeps using the same
// backing array, so callers that keep writing must copy the result.
func (w *Writer) Bytes() []byte { return w.buf }

// Reset empties the Writer and keeps its buffer, so that the next encoding
// overwrites the one returned by Bytes.
func (w *Writer) Reset() { w.buf = w.buf[:0] }

// Len returns the number of bytes written.
func (w *Writer) Len() int { return len(w.buf) }

// Uint8 writes one byte.
func (w *Writer) Uint8(v uint8) { w.buf = append(w.buf, v) }

// Uint16 writes a big-endian uint16.
func (w *Writer) Uint16(v uint16) { w.buf = binary.BigEndian.AppendUint16(w.buf, v) }

// Uint32 writes a big-endian uint32.
func (w *Writer) Uint32(v uint32) { w.buf = binary.BigEndian.AppendUint32(w.buf, v) }

// Uint64 writes a big-endian uint64.
func (w *Writer) Uint64(v uint64) { w.buf = binary.BigEndian.AppendUint64(w.buf, v) }

// Bool writes a TLS bool (one byte, 0 or 1).
func (w *Writer) Bool(v bool) {
	if v {
		w.Uint8(1)
	} else {
		w.Uint8(0)
	}
}

// Raw writes b without a length prefix (a fixed-size array or a
// pre-encoded structure).
func (w *Writer) Raw(b []byte) { w.buf = append(w.buf, b...) }

// Opaque writes b as a variable-length vector: opaque v<V>.
func (w *Writer) Opaque(b []byte) {
	w.buf = AppendVarint(w.buf, uint64(len(b)))
	w.buf = append(w.buf, b...)
}

// Vector writes whatever fn writes, prefixed with its length as a
// variable-length vector header.
func (w *Writer) Vector(fn func(w *Writer)) {
	start := len(w.buf)
	// Reserve the most common header size and fix it up afterwards, so that
	// the usual short vector needs no copying.
	w.buf = append(w.buf, 0)
	fn(w)
	n := uint64(len(w.buf) - start - 1)
	hdr := VarintLen(n)
	if hdr > 1 {
		w.buf = append(w.buf, make([]byte, hdr-1)...)
		copy(w.buf[start+hdr:], w.buf[start+1:len(w.buf)-(hdr-1)])
	}
	AppendVarint(w.buf[start:start], n)
}

// Optional writes the presence marker of an optional<T>; when present is
// true the caller writes the value next.
func (w *Writer) Optional(present bool) { w.Bool(present) }
