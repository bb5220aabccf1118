package pprf

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

func TestEncodingRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, s := range suite.All() {
		t.Run(s.String(), func(t *testing.T) {
			nh := s.HashSize()
			key := randomBytes(r, nh)
			p, _ := New(s, key)
			used := inputs(nh, r)
			for _, in := range used {
				if _, err := p.Evaluate(in); err != nil {
					t.Fatal(err)
				}
			}
			enc, err := p.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var q PPRF
			if err := q.UnmarshalBinary(enc); err != nil {
				t.Fatal(err)
			}
			again, _ := q.MarshalBinary()
			if !bytes.Equal(enc, again) {
				t.Fatal("re-encoding differs")
			}
			for _, in := range used {
				if _, err := q.Evaluate(in); !errors.Is(err, ErrPunctured) {
					t.Fatalf("decoded state re-evaluated a punctured input: %v", err)
				}
			}
			fresh := randomBytes(r, nh)
			got, err := q.Evaluate(fresh)
			if err != nil || !bytes.Equal(got, reference(s, key, fresh)) {
				t.Fatalf("decoded state: %x, %v", got, err)
			}
		})
	}
}

// encodeNodes builds an encoded state by hand, for decoder tests.
func encodeNodes(version uint8, id uint16, nodes ...[3][]byte) []byte {
	w := codec.NewWriter(64)
	w.Uint8(version)
	w.Uint16(id)
	w.Vector(func(w *codec.Writer) {
		for _, n := range nodes {
			w.Raw(n[0])
			w.Opaque(n[1])
			w.Opaque(n[2])
		}
	})
	return w.Bytes()
}

func depth(d uint16) []byte { return []byte{byte(d >> 8), byte(d)} }

func TestDecodeRejects(t *testing.T) {
	secret := seq(32, 1)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, codec.ErrTruncated},
		{"unknown version", encodeNodes(2, 1), ErrInvalidState},
		{"unknown suite", encodeNodes(1, 0x99), suite.ErrUnsupportedSuite},
		{"depth beyond leaves", encodeNodes(1, 1, [3][]byte{depth(257), make([]byte, 33), secret}), ErrInvalidState},
		{"prefix too long", encodeNodes(1, 1, [3][]byte{depth(1), []byte{0x80, 0}, secret}), ErrInvalidState},
		{"prefix too short", encodeNodes(1, 1, [3][]byte{depth(9), []byte{0x80}, secret}), ErrInvalidState},
		{"bits beyond depth", encodeNodes(1, 1, [3][]byte{depth(1), []byte{0xc0}, secret}), ErrInvalidState},
		{"short secret", encodeNodes(1, 1, [3][]byte{depth(0), nil, secret[:31]}), ErrInvalidState},
		{"out of order", encodeNodes(1, 1,
			[3][]byte{depth(1), []byte{0x80}, secret},
			[3][]byte{depth(1), []byte{0x00}, secret}), ErrInvalidState},
		{"duplicate", encodeNodes(1, 1,
			[3][]byte{depth(1), []byte{0x80}, secret},
			[3][]byte{depth(1), []byte{0x80}, secret}), ErrInvalidState},
		{"nested", encodeNodes(1, 1,
			[3][]byte{depth(1), []byte{0x00}, secret},
			[3][]byte{depth(2), []byte{0x40}, secret}), ErrInvalidState},
		{"same first leaf", encodeNodes(1, 1,
			[3][]byte{depth(1), []byte{0x00}, secret},
			[3][]byte{depth(2), []byte{0x00}, secret}), ErrInvalidState},
		{"trailing data", append(encodeNodes(1, 1, [3][]byte{depth(0), nil, secret}), 0), codec.ErrTrailingData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p PPRF
			err := p.UnmarshalBinary(tt.data)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if p.suite != nil {
				t.Fatal("failed decode changed the receiver")
			}
		})
	}
	// Disjoint neighbours are fine, and so is an empty frontier.
	for _, data := range [][]byte{
		encodeNodes(1, 1, [3][]byte{depth(1), []byte{0x00}, secret}, [3][]byte{depth(2), []byte{0x80}, secret}),
		encodeNodes(1, 1),
	} {
		var p PPRF
		if err := p.UnmarshalBinary(data); err != nil {
			t.Errorf("valid state rejected: %v", err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	s, _ := suite.Lookup(1)
	p, _ := New(s, seq(32, 0))
	seed, _ := p.MarshalBinary()
	f.Add(seed)
	_, _ = p.Evaluate(seq(32, 5))
	seed, _ = p.MarshalBinary()
	f.Add(seed)
	f.Add(encodeNodes(1, 1, [3][]byte{depth(1), []byte{0x00}, seq(32, 1)}, [3][]byte{depth(2), []byte{0x80}, seq(32, 2)}))
	f.Add(encodeNodes(1, 2, [3][]byte{depth(3), []byte{0x20}, seq(48, 1)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p PPRF
		if err := p.UnmarshalBinary(data); err != nil {
			return
		}
		// Only canonical encodings decode.
		enc, _ := p.MarshalBinary()
		if !bytes.Equal(enc, data) {
			t.Fatalf("decoded state re-encodes differently:\n%x\n%x", data, enc)
		}
		nh := p.suite.HashSize()
		in := make([]byte, nh)
		if len(data) > 0 {
			in[0] = data[len(data)-1]
		}
		n := p.Len()
		if _, err := p.Evaluate(in); err == nil {
			if _, err := p.Evaluate(in); !errors.Is(err, ErrPunctured) {
				t.Fatalf("re-evaluation after decode: %v", err)
			}
		} else if p.Len() != n {
			t.Fatal("failed evaluation changed the state")
		}
	})
}
