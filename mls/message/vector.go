package message

import "github.com/mls-appservice/mls-appservice/mls/codec"

// The helpers below encode and decode vectors of structures and of small
// integers. Decoded vectors are always non-nil, so that an empty vector
// re-encodes as one.

type marshalerPtr[T any] interface {
	*T
	codec.Marshaler
}

type unmarshalerPtr[T any] interface {
	*T
	codec.Unmarshaler
}

func writeList[T any, P marshalerPtr[T]](w *codec.Writer, items []T) {
	w.Vector(func(w *codec.Writer) {
		for i := range items {
			P(&items[i]).MarshalMLS(w)
		}
	})
}

func readList[T any, P unmarshalerPtr[T]](r *codec.Reader, field string) []T {
	items := []T{}
	r.Each(field, func(r *codec.Reader) {
		var v T
		P(&v).UnmarshalMLS(r)
		items = append(items, v)
	})
	return items
}

func writeUint16s[T ~uint16](w *codec.Writer, vs []T) {
	w.Vector(func(w *codec.Writer) {
		for _, v := range vs {
			w.Uint16(uint16(v))
		}
	})
}

func readUint16s[T ~uint16](r *codec.Reader, field string) []T {
	vs := []T{}
	r.Each(field, func(r *codec.Reader) { vs = append(vs, T(r.Uint16(field))) })
	return vs
}

func writeUint32s(w *codec.Writer, vs []uint32) {
	w.Vector(func(w *codec.Writer) {
		for _, v := range vs {
			w.Uint32(v)
		}
	})
}

func readUint32s(r *codec.Reader, field string) []uint32 {
	vs := []uint32{}
	r.Each(field, func(r *codec.Reader) { vs = append(vs, r.Uint32(field)) })
	return vs
}

func writeOpaques(w *codec.Writer, vs [][]byte) {
	w.Vector(func(w *codec.Writer) {
		for _, v := range vs {
			w.Opaque(v)
		}
	})
}

func readOpaques(r *codec.Reader, field string) [][]byte {
	vs := [][]byte{}
	r.Each(field, func(r *codec.Reader) { vs = append(vs, r.Opaque(field)) })
	return vs
}
