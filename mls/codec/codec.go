package codec

import (
	"io"
	"sync"
)

// Marshaler is implemented by every MLS structure that can encode itself.
type Marshaler interface {
	MarshalMLS(w *Writer)
}

// Unmarshaler is implemented by every MLS structure that can decode itself.
// UnmarshalMLS reads exactly one structure and records errors on r.
type Unmarshaler interface {
	UnmarshalMLS(r *Reader)
}

// Marshal returns the encoding of v, in a slice of its own size. It is
// built in a reused buffer (as WriteTo's) and copied out once: a fresh
// Writer grows by doubling, and for a Welcome's ratchet tree (177 KB at
// 1,000 members) the copies and garbage of growing were a fifth of an
// Add commit's time.
func Marshal(v Marshaler) []byte {
	w := encodeInScratch(v)
	if cap(w.buf) > maxScratch {
		return w.buf // not kept: the caller takes it as it is
	}
	var out []byte // nil for an empty encoding, as a fresh Writer's
	if len(w.buf) > 0 {
		out = make([]byte, len(w.buf))
		copy(out, w.buf)
	}
	releaseScratch(w)
	return out
}

// WriteTo writes the encoding of v to dst, typically a hash.Hash. The
// encoding is built in a buffer that is reused afterwards: the inputs that
// are hashed and dropped (a commit's transcript hash input) are as large as
// the commit, and growing a fresh buffer for each costs twice that.
func WriteTo(dst io.Writer, v Marshaler) error {
	w := encodeInScratch(v)
	_, err := dst.Write(w.Bytes())
	releaseScratch(w)
	return err
}

// scratch holds the buffers of Marshal and WriteTo; one larger than
// maxScratch is dropped rather than kept (a 10,000-member tree is about
// 1.7 MB: kept, as a large group marshals it at every commit).
var scratch = sync.Pool{New: func() any { return new(Writer) }}

// encodeInScratch encodes v in a Writer of scratch.
func encodeInScratch(v Marshaler) *Writer {
	w := scratch.Get().(*Writer)
	w.Reset()
	v.MarshalMLS(w)
	return w
}

// releaseScratch wipes w and returns it to scratch, unless its buffer is
// larger than maxScratch.
func releaseScratch(w *Writer) {
	if cap(w.buf) <= maxScratch {
		clear(w.buf) // it may have held secrets
		scratch.Put(w)
	}
}

const maxScratch = 4 << 20

// Unmarshal decodes data into v and requires that all of data is used.
func Unmarshal(data []byte, v Unmarshaler, what string) error {
	r := NewReader(data)
	v.UnmarshalMLS(r)
	return r.Finish(what)
}
