package pprf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// indexes returns the indexes of a tree of depth bits that stress its
// edges: the first and last leaf and their neighbours, the first leaf of
// the right half, and random ones.
func indexes(bits int, r *rand.Rand) []uint64 {
	last := uint64(1)<<bits - 1
	candidates := []uint64{0, last, 1, last - 1, 1 << (bits - 1)}
	for range 4 {
		candidates = append(candidates, r.Uint64N(last+1))
	}
	var out []uint64
	seen := map[uint64]bool{}
	for _, i := range candidates {
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

// indexBytes builds the Evaluate input of leaf i by arithmetic, as an
// independent check of the bit order EvaluateIndex uses: i shifted to the
// top of ceil(bits/8) big-endian bytes.
func indexBytes(i uint64, bits int) []byte {
	n := prefixLen(bits)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i<<(8*n-bits))
	return b[8-n:]
}

func TestEvaluateIndexMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, s := range suite.All() {
		for _, bits := range []int{1, 2, 6, 7, 8, 9, 16, 31, 32} {
			t.Run(s.String()+"/"+strconv.Itoa(bits), func(t *testing.T) {
				key := randomBytes(r, s.HashSize())
				p, err := NewIndexed(s, key, bits)
				if err != nil {
					t.Fatal(err)
				}
				if p.Bits() != bits {
					t.Fatalf("Bits() = %d", p.Bits())
				}
				// The same leaves through Evaluate, on a second PPRF.
				q, _ := NewIndexed(s, key, bits)
				for _, i := range indexes(bits, r) {
					want := referenceIndex(s, key, i, bits)
					got, err := p.EvaluateIndex(i)
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("EvaluateIndex(%d) = %x, %v; want %x", i, got, err, want)
					}
					got, err = q.Evaluate(indexBytes(i, bits))
					if err != nil || !bytes.Equal(got, want) {
						t.Fatalf("Evaluate(%x) = %x, %v; want %x", indexBytes(i, bits), got, err, want)
					}
					if _, err := p.EvaluateIndex(i); !errors.Is(err, ErrPunctured) {
						t.Fatalf("EvaluateIndex(%d) again: %v", i, err)
					}
				}
			})
		}
	}
}

// On a PPRF made by New, leaf i is the input holding i big-endian in its
// last eight bytes.
func TestEvaluateIndexOnNew(t *testing.T) {
	s := suite1(t)
	key := seq(32, 3)
	p, _ := New(s, key)
	if p.Bits() != 256 {
		t.Fatalf("Bits() = %d", p.Bits())
	}
	for _, i := range []uint64{0, 1, 0x0123456789abcdef, math.MaxUint64} {
		in := make([]byte, 32)
		binary.BigEndian.PutUint64(in[24:], i)
		got, err := p.EvaluateIndex(i)
		if err != nil || !bytes.Equal(got, reference(s, key, in)) {
			t.Fatalf("EvaluateIndex(%#x) = %x, %v", i, got, err)
		}
		if !bytes.Equal(got, referenceIndex(s, key, i, 256)) {
			t.Fatalf("referenceIndex disagrees with reference at %#x", i)
		}
		if _, err := p.Evaluate(in); !errors.Is(err, ErrPunctured) {
			t.Fatalf("Evaluate after EvaluateIndex(%#x): %v", i, err)
		}
	}
}

// TestIndexedPunctureEachLeaf punctures every leaf of a small tree first
// and checks that all the others keep their values, evaluating them in
// order until nothing is left.
func TestIndexedPunctureEachLeaf(t *testing.T) {
	const bits = 6
	s := suite1(t)
	key := seq(32, 0x21)
	var want [1 << bits][]byte
	for i := range want {
		want[i] = referenceIndex(s, key, uint64(i), bits)
	}
	for first := range uint64(1 << bits) {
		p, _ := NewIndexed(s, key, bits)
		if _, err := p.EvaluateIndex(first); err != nil {
			t.Fatal(err)
		}
		if _, err := p.EvaluateIndex(first); !errors.Is(err, ErrPunctured) {
			t.Fatalf("leaf %d again: %v, want ErrPunctured", first, err)
		}
		k := 1
		for i := range uint64(1 << bits) {
			if i == first {
				continue
			}
			got, err := p.EvaluateIndex(i)
			if err != nil || !bytes.Equal(got, want[i]) {
				t.Fatalf("after puncturing %d: leaf %d = %x, %v; want %x", first, i, got, err, want[i])
			}
			k++
			if p.Len() > k*bits {
				t.Fatalf("after %d evaluations: %d secrets, more than %d", k, p.Len(), k*bits)
			}
		}
		if p.Len() != 0 {
			t.Fatalf("every leaf used, but %d secrets left", p.Len())
		}
	}
}

func TestIndexedLen(t *testing.T) {
	const bits = 32
	s := suite1(t)
	r := rand.New(rand.NewPCG(23, 24))

	// Any k evaluations leave at most k*bits secrets.
	p, _ := NewIndexed(s, seq(32, 1), bits)
	for k := 1; k <= 64; k++ {
		if _, err := p.EvaluateIndex(r.Uint64N(1 << bits)); err != nil {
			t.Fatal(err)
		}
		if p.Len() > k*bits {
			t.Fatalf("after %d evaluations: %d secrets", k, p.Len())
		}
	}

	// A batch used in index order never holds more than bits secrets:
	// the frontier is then the right siblings of one path.
	p, _ = NewIndexed(s, seq(32, 2), bits)
	for i := range uint64(1000) {
		if _, err := p.EvaluateIndex(i); err != nil {
			t.Fatal(err)
		}
		if p.Len() > bits {
			t.Fatalf("after leaves 0..%d: %d secrets", i, p.Len())
		}
	}
}

func TestIndexedErrors(t *testing.T) {
	s := suite1(t)
	key := seq(32, 5)
	for _, bits := range []int{-1, 0, 33, 64, 256} {
		if _, err := NewIndexed(s, key, bits); !errors.Is(err, ErrLeafDepth) {
			t.Errorf("NewIndexed with %d bits: %v", bits, err)
		}
	}
	if _, err := NewIndexed(s, key[:31], 8); !errors.Is(err, ErrInputLength) {
		t.Errorf("NewIndexed with a short key: %v", err)
	}

	tests := []struct {
		name  string
		bits  int
		index uint64 // used when input is nil
		input []byte
		want  error
	}{
		{"index 2^bits", 6, 64, nil, ErrIndexRange},
		{"index 2^63", 6, 1 << 63, nil, ErrIndexRange},
		{"index max", 6, math.MaxUint64, nil, ErrIndexRange},
		{"index 2^32", 32, 1 << 32, nil, ErrIndexRange},
		{"index 2", 1, 2, nil, ErrIndexRange},
		{"empty input", 6, 0, []byte{}, ErrInputLength},
		{"long input", 6, 0, []byte{0, 0}, ErrInputLength},
		{"Nh-byte input", 6, 0, make([]byte, 32), ErrInputLength},
		{"short input", 9, 0, []byte{0}, ErrInputLength},
		{"bit past 6", 6, 0, []byte{0x02}, ErrInputLength},
		{"bit past 1", 1, 0, []byte{0x40}, ErrInputLength},
		{"bit past 9", 9, 0, []byte{0xff, 0x40}, ErrInputLength},
		{"bit past 31", 31, 0, []byte{0, 0, 0, 1}, ErrInputLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := NewIndexed(s, key, tt.bits)
			var err error
			if tt.input == nil {
				_, err = p.EvaluateIndex(tt.index)
			} else {
				_, err = p.Evaluate(tt.input)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if p.Len() != 1 || p.nodes[0].depth != 0 {
				t.Fatal("a rejected evaluation changed the state")
			}
		})
	}

	// The DMLS derivations take KDF.Nh-byte inputs, which an indexed PPRF
	// does not have.
	p, _ := NewIndexed(s, key, 32)
	conf, _ := CommitConfirmation(s, seq(32, 6))
	if _, err := p.ChildInitSecret(conf, nil); !errors.Is(err, ErrLeafDepth) {
		t.Errorf("ChildInitSecret: %v", err)
	}
	if _, err := p.DeriveChild("child_init", conf, nil); !errors.Is(err, ErrLeafDepth) {
		t.Errorf("DeriveChild: %v", err)
	}
	if p.Len() != 1 {
		t.Error("a rejected derivation changed the state")
	}
}

func TestIndexedCloneAndWipe(t *testing.T) {
	s := suite1(t)
	key := seq(32, 8)
	p, _ := NewIndexed(s, key, 6)
	c := p.Clone()
	if c.Bits() != 6 {
		t.Fatalf("clone has %d bits", c.Bits())
	}
	if _, err := p.EvaluateIndex(9); err != nil {
		t.Fatal(err)
	}
	got, err := c.EvaluateIndex(9)
	if err != nil || !bytes.Equal(got, referenceIndex(s, key, 9, 6)) {
		t.Fatalf("clone: %x, %v", got, err)
	}
	p.Wipe()
	if _, err := p.EvaluateIndex(10); !errors.Is(err, ErrPunctured) {
		t.Fatalf("after Wipe: %v", err)
	}
}
