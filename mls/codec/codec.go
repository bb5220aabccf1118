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

// Marshal returns the encoding of v.
func Marshal(v Marshaler) []byte {
	var w Writer
	v.MarshalMLS(&w)
	return w.Bytes()
}

// WriteTo writes the encoding of v to dst, typically a hash.Hash. The
// encoding is built in a buffer that is reused afterwards: the inputs that
// are hashed and dropped (a commit's transcript hash input) are as large as
// the commit, and growing a fresh buffer for each costs twice that.
func WriteTo(dst io.Writer, v Marshaler) error {
	w := scratch.Get().(*Writer)
	w.Reset()
	v.MarshalMLS(w)
	_, err := dst.Write(w.Bytes())
	if cap(w.buf) <= maxScratch {
		clear(w.buf) // it may have held secrets
		scratch.Put(w)
	}
	return err
}

// scratch holds the buffers of WriteTo; one larger than maxScratch is
// dropped rather than kept.
var scratch = sync.Pool{New: func() any { return new(Writer) }}

const maxScratch = 64 << 10

// Unmarshal decodes data into v and requires that all of data is used.
func Unmarshal(data []byte, v Unmarshaler, what string) error {
	r := NewReader(data)
	v.UnmarshalMLS(r)
	return r.Finish(what)
}
