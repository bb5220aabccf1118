package codec

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

// Unmarshal decodes data into v and requires that all of data is used.
func Unmarshal(data []byte, v Unmarshaler, what string) error {
	r := NewReader(data)
	v.UnmarshalMLS(r)
	return r.Finish(what)
}
