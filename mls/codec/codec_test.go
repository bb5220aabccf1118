package codec

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/internal/vectors"
)

func TestDeserializationVectors(t *testing.T) {
	var cases []struct {
		Header vectors.Hex `json:"vlbytes_header"`
		Length uint64      `json:"length"`
	}
	vectors.Load(t, "deserialization.json", &cases)
	passed := 0
	for _, c := range cases {
		v, n, err := ParseVarint(c.Header)
		enc := AppendVarint(nil, c.Length)
		if err != nil || n != len(c.Header) || v != c.Length || !bytes.Equal(enc, c.Header) {
			t.Errorf("header %x: got %d (%d bytes, %v), encode %x; want %d", []byte(c.Header), v, n, err, enc, c.Length)
			continue
		}
		passed++
	}
	vectors.Report(t, "deserialization.json", passed, len(cases))
}

func TestVarintErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"reserved prefix", []byte{0xc0, 0, 0, 0, 0, 0, 0, 0}, ErrInvalidVarint},
		{"two-byte truncated", []byte{0x40}, ErrTruncated},
		{"four-byte truncated", []byte{0x80, 0, 0}, ErrTruncated},
		{"non-minimal 2 bytes", []byte{0x40, 0x25}, ErrNonMinimalVarint},
		{"non-minimal 4 bytes", []byte{0x80, 0, 0x3f, 0xff}, ErrNonMinimalVarint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ParseVarint(tt.in); !errors.Is(err, tt.want) {
				t.Fatalf("ParseVarint(%x) = %v, want %v", tt.in, err, tt.want)
			}
		})
	}
}

func TestVectorRoundTrip(t *testing.T) {
	for _, size := range []int{0, 1, 63, 64, 200, 16383, 16384, 70000} {
		payload := bytes.Repeat([]byte{0xab}, size)
		var w Writer
		w.Uint16(0x0102)
		w.Vector(func(w *Writer) { w.Raw(payload) })
		w.Uint8(7)

		r := NewReader(w.Bytes())
		if got := r.Uint16("a"); got != 0x0102 {
			t.Fatalf("size %d: a = %x", size, got)
		}
		got := r.Opaque("b")
		if c := r.Uint8("c"); c != 7 {
			t.Fatalf("size %d: c = %d", size, c)
		}
		if err := r.Finish("test"); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("size %d: payload mismatch", size)
		}
	}
}

func TestReaderErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		read  func(r *Reader)
		field string
		want  error
	}{
		{"truncated uint32", []byte{1, 2}, func(r *Reader) { r.Uint32("epoch") }, "epoch", ErrTruncated},
		{"over-long opaque", []byte{0x05, 1, 2}, func(r *Reader) { r.Opaque("init_key") }, "init_key", ErrLengthTooLarge},
		{"bad optional", []byte{2}, func(r *Reader) { r.Optional("path") }, "path", ErrInvalidValue},
		{"trailing inside vector", []byte{0x02, 1, 2}, func(r *Reader) {
			r.Vector("exts", func(r *Reader) { r.Uint8("x") })
		}, "exts", ErrTrailingData},
		{"element reads nothing", []byte{0x01, 1}, func(r *Reader) {
			r.Each("list", func(r *Reader) {})
		}, "list", ErrInvalidValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(tt.in)
			tt.read(r)
			err := r.Err()
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, tt.want) || de.Field != tt.field {
				t.Fatalf("got %v, want %v in field %q", err, tt.want, tt.field)
			}
		})
	}
}

func TestFinishRejectsTrailingData(t *testing.T) {
	r := NewReader([]byte{1, 2})
	r.Uint8("a")
	if err := r.Finish("thing"); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("got %v", err)
	}
}

func TestStickyError(t *testing.T) {
	r := NewReader([]byte{0x40})
	r.Opaque("first")
	r.Uint8("second")
	var de *DecodeError
	if !errors.As(r.Err(), &de) || de.Field != "first" {
		t.Fatalf("first error should stick, got %v", r.Err())
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte{0x02, 0x01, 0x02, 0x00})
	f.Add([]byte{0x40, 0x40})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Decode an arbitrary nested structure; it must never panic, and
		// whatever decodes must re-encode to the same bytes.
		r := NewReader(data)
		var items [][]byte
		r.Each("items", func(r *Reader) { items = append(items, r.Opaque("item")) })
		if r.Finish("fuzz") != nil {
			return
		}
		var w Writer
		w.Vector(func(w *Writer) {
			for _, it := range items {
				w.Opaque(it)
			}
		})
		if !bytes.Equal(w.Bytes(), data) {
			t.Fatalf("round trip %x -> %x", data, w.Bytes())
		}
	})
}

// marshalFunc is a Marshaler made of a function.
type marshalFunc func(w *Writer)

func (f marshalFunc) MarshalMLS(w *Writer) { f(w) }

// Marshal builds in a reused buffer: what it returns must be the caller's
// alone, at its exact size, nil when empty, and a large encoding (not
// kept for reuse) must be whole too.
func TestMarshalOwnsItsResult(t *testing.T) {
	bytesOf := func(b byte, n int) marshalFunc {
		return func(w *Writer) { w.Opaque(bytes.Repeat([]byte{b}, n)) }
	}
	a := Marshal(bytesOf(1, 100)) // a 2-byte length, then the bytes
	b := Marshal(bytesOf(2, 50))
	if len(a) != 102 || cap(a) != 102 || a[2] != 1 || a[101] != 1 {
		t.Fatalf("first encoding changed or oversized: len %d cap %d", len(a), cap(a))
	}
	if len(b) != 51 || b[1] != 2 {
		t.Fatalf("second encoding: len %d", len(b))
	}
	if got := Marshal(marshalFunc(func(*Writer) {})); got != nil {
		t.Fatalf("empty encoding %v, want nil", got)
	}
	big := Marshal(bytesOf(3, maxScratch+1))
	again := Marshal(bytesOf(4, 10))
	if len(big) != maxScratch+1+VarintLen(uint64(maxScratch+1)) || big[len(big)-1] != 3 || again[1] != 4 {
		t.Fatalf("large encoding: len %d", len(big))
	}
}

// TestOpaqueString: the string of an opaque vector, the one given back
// when equal (without allocating), "" and an error when truncated.
func TestOpaqueString(t *testing.T) {
	w := NewWriter(16)
	w.Opaque([]byte("@a:x"))
	w.Opaque([]byte("@a:x"))
	w.Opaque(nil)
	data := w.Bytes()
	r := NewReader(data)
	first := r.OpaqueString("a", "")
	if first != "@a:x" {
		t.Fatalf("first %q", first)
	}
	var second string
	if n := testing.AllocsPerRun(1, func() { second = NewReader(data[5:]).OpaqueString("b", first) }); n > 1 {
		t.Errorf("%v allocations for a string equal to the one given", n)
	}
	if second != first || r.OpaqueString("b", first) != first || r.OpaqueString("c", first) != "" {
		t.Fatal("strings read wrong")
	}
	if err := r.Finish("x"); err != nil {
		t.Fatal(err)
	}
	short := NewReader(data[:3])
	if s := short.OpaqueString("d", ""); s != "" || !errors.Is(short.Err(), ErrLengthTooLarge) {
		t.Fatalf("truncated: %q, %v", s, short.Err())
	}
}
