package pprf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
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
			var old PPRF
			if err := old.UnmarshalBinary(legacyEncoding(p)); err != nil {
				t.Fatalf("version 1: %v", err)
			}
			if again, _ := old.MarshalBinary(); !bytes.Equal(enc, again) {
				t.Fatal("the version 1 encoding decodes to another state")
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

// legacyEncoding encodes p as versions 1 and 2 did (version 1 for the
// leaf depth of New, 2 for any other), which MarshalBinary no longer
// writes: states stored before version 3 must keep decoding.
func legacyEncoding(p *PPRF) []byte {
	nodes := make([][3][]byte, len(p.nodes))
	for i, n := range p.nodes {
		nodes[i] = [3][]byte{depth(uint16(n.depth)), n.prefix[:prefixLen(n.depth)], n.secret}
	}
	if p.bits == 8*p.suite.HashSize() {
		return encodeNodes(1, uint16(p.suite.ID()), nodes...)
	}
	return encodeNodesV2(uint16(p.suite.ID()), uint16(p.bits), nodes...)
}

// encodeV3 builds a version 3 state by hand, for decoder tests.
func encodeV3(id, bits uint16, shape []byte, secrets ...[]byte) []byte {
	w := codec.NewWriter(64)
	w.Raw([]byte{3, byte(id >> 8), byte(id), byte(bits >> 8), byte(bits)})
	w.Opaque(shape)
	w.Opaque(bytes.Join(secrets, nil))
	return w.Bytes()
}

// encodeNodes builds an encoded state by hand, for decoder tests.
func encodeNodes(version uint8, id uint16, nodes ...[3][]byte) []byte {
	return encodeState([]byte{version, byte(id >> 8), byte(id)}, nodes...)
}

// encodeNodesV2 builds a version 2 state with leaf depth bits by hand.
func encodeNodesV2(id, bits uint16, nodes ...[3][]byte) []byte {
	return encodeState([]byte{2, byte(id >> 8), byte(id), byte(bits >> 8), byte(bits)}, nodes...)
}

// encodeState appends the node vector to header.
func encodeState(header []byte, nodes ...[3][]byte) []byte {
	w := codec.NewWriter(64)
	w.Raw(header)
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
		{"version 0", encodeNodes(0, 1), ErrInvalidState},
		{"unknown version", encodeNodes(4, 1), ErrInvalidState},
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

		{"v2 without bits", []byte{2, 0, 1, 0}, codec.ErrTruncated},
		{"v2 unknown suite", encodeNodesV2(0x99, 6), suite.ErrUnsupportedSuite},
		{"v2 bits 0", encodeNodesV2(1, 0), ErrInvalidState},
		{"v2 bits 33", encodeNodesV2(1, 33), ErrInvalidState},
		{"v2 bits of version 1", encodeNodesV2(1, 256, [3][]byte{depth(0), nil, secret}), ErrInvalidState},
		{"v2 depth beyond bits", encodeNodesV2(1, 6, [3][]byte{depth(7), []byte{0x00}, secret}), ErrInvalidState},
		{"v2 leaf beyond bits", encodeNodesV2(1, 9, [3][]byte{depth(10), []byte{0, 0}, secret}), ErrInvalidState},
		{"v2 bits beyond depth", encodeNodesV2(1, 6, [3][]byte{depth(6), []byte{0x02}, secret}), ErrInvalidState},
		{"v2 bits beyond depth 3", encodeNodesV2(1, 32, [3][]byte{depth(3), []byte{0x10}, secret}), ErrInvalidState},
		{"v2 prefix too long", encodeNodesV2(1, 6, [3][]byte{depth(6), []byte{0x04, 0}, secret}), ErrInvalidState},
		{"v2 prefix too short", encodeNodesV2(1, 16, [3][]byte{depth(9), []byte{0x80}, secret}), ErrInvalidState},
		{"v2 short secret", encodeNodesV2(1, 6, [3][]byte{depth(0), nil, secret[:31]}), ErrInvalidState},
		{"v2 nested", encodeNodesV2(1, 6,
			[3][]byte{depth(1), []byte{0x80}, secret},
			[3][]byte{depth(6), []byte{0xfc}, secret}), ErrInvalidState},
		{"v2 out of order", encodeNodesV2(1, 6,
			[3][]byte{depth(6), []byte{0x08}, secret},
			[3][]byte{depth(6), []byte{0x04}, secret}), ErrInvalidState},

		// Version 3. Shape codes: 00 empty, 01 frontier, 10 split.
		{"v3 without bits", []byte{3, 0, 1, 0}, codec.ErrTruncated},
		{"v3 unknown suite", encodeV3(0x99, 6, []byte{0x40}, secret), suite.ErrUnsupportedSuite},
		{"v3 bits 0", encodeV3(1, 0, []byte{0x40}, secret), ErrInvalidState},
		{"v3 bits 33", encodeV3(1, 33, []byte{0x40}, secret), ErrInvalidState},
		{"v3 bits 255", encodeV3(1, 255, []byte{0x40}, secret), ErrInvalidState},
		{"v3 no shape", encodeV3(1, 6, nil), ErrInvalidState},
		{"v3 shape ends inside", encodeV3(1, 6, []byte{0xaa}), ErrInvalidState},          // splits, then nothing
		{"v3 code 3", encodeV3(1, 6, []byte{0xc0}), ErrInvalidState},                     // 11
		{"v3 split below a leaf", encodeV3(1, 1, []byte{0xa0}, secret), ErrInvalidState}, // split, split at depth 1
		{"v3 split of two empties", encodeV3(1, 6, []byte{0x80}), ErrInvalidState},
		{"v3 split of two empties deeper", encodeV3(1, 6, []byte{0x98, 0x00}, secret), ErrInvalidState}, // 10 01 10 00 | 00
		{"v3 missing secret", encodeV3(1, 6, []byte{0x40}), ErrInvalidState},
		{"v3 extra secret", encodeV3(1, 6, []byte{0x40}, secret, secret), ErrInvalidState},
		{"v3 short secret", encodeV3(1, 6, []byte{0x40}, secret[:31]), ErrInvalidState},
		{"v3 secrets not whole", encodeV3(1, 6, []byte{0x40}, secret, secret[:5]), ErrInvalidState},
		{"v3 bits after the walk", encodeV3(1, 6, []byte{0x41}, secret), ErrInvalidState},
		{"v3 bytes after the walk", encodeV3(1, 6, []byte{0x40, 0x00}, secret), ErrInvalidState},
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
		encodeNodesV2(1, 6, [3][]byte{depth(1), []byte{0x00}, secret}, [3][]byte{depth(6), []byte{0xfc}, secret}),
		encodeNodesV2(1, 1, [3][]byte{depth(1), []byte{0x80}, secret}),
		encodeNodesV2(1, 32),
		encodeV3(1, 256, []byte{0x40}, secret),       // the root
		encodeV3(1, 6, []byte{0x00}),                 // nothing left
		encodeV3(1, 6, []byte{0x94}, secret, secret), // 10 01 01: both halves
		encodeV3(1, 1, []byte{0x90}, secret),         // 10 01 00: the left leaf
		encodeV3(1, 6, []byte{0x89, 0x00}, secret),   // 10 00 10 01 | 00: the third quarter
	} {
		var p PPRF
		if err := p.UnmarshalBinary(data); err != nil {
			t.Errorf("valid state rejected: %v", err)
		}
	}
}

// sameNode reports whether two frontier nodes are the same.
func sameNode(a, b node) bool {
	return a.depth == b.depth && bytes.Equal(a.prefix, b.prefix) && bytes.Equal(a.secret, b.secret)
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
	for _, bits := range []int{1, 6, 32} {
		p, _ := NewIndexed(s, seq(32, 0), bits)
		seed, _ := p.MarshalBinary()
		f.Add(seed)
		_, _ = p.EvaluateIndex(1)
		_, _ = p.EvaluateIndex(1<<bits - 1)
		seed, _ = p.MarshalBinary()
		f.Add(seed)
	}
	f.Add(encodeNodesV2(1, 6, [3][]byte{depth(1), []byte{0x00}, seq(32, 1)}, [3][]byte{depth(6), []byte{0xfc}, seq(32, 2)}))
	f.Add(encodeNodesV2(2, 9, [3][]byte{depth(9), []byte{0x01, 0x80}, seq(48, 1)}))
	f.Add(encodeV3(1, 6, []byte{0x89, 0x00}, seq(32, 1)))
	f.Add(encodeV3(2, 256, []byte{0x94}, seq(48, 1), seq(48, 2)))
	f.Fuzz(func(t *testing.T, data []byte) {
		var p PPRF
		if err := p.UnmarshalBinary(data); err != nil {
			return
		}
		// Only canonical encodings decode: a version 3 state re-encodes
		// to itself, and one of an older version to a version 3 state
		// that decodes to the same.
		enc, _ := p.MarshalBinary()
		if data[0] == stateV3 && !bytes.Equal(enc, data) {
			t.Fatalf("decoded state re-encodes differently:\n%x\n%x", data, enc)
		}
		var q PPRF
		if err := q.UnmarshalBinary(enc); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if again, _ := q.MarshalBinary(); !bytes.Equal(again, enc) || !slices.EqualFunc(p.nodes, q.nodes, sameNode) {
			t.Fatalf("decoded state and its re-encoding differ")
		}
		in := make([]byte, prefixLen(p.Bits()))
		if len(data) > 0 {
			in[0] = data[len(data)-1]
		}
		if p.Bits() < 8 {
			in[0] &= 0xff << (8 - p.Bits()) // a valid input
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

func TestIndexedEncodingRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	for _, s := range suite.All() {
		for _, bits := range []int{1, 6, 9, 32} {
			t.Run(s.String()+"/"+strconv.Itoa(bits), func(t *testing.T) {
				key := randomBytes(r, s.HashSize())
				p, _ := NewIndexed(s, key, bits)
				used := indexes(bits, r)[:2]
				for _, i := range used {
					if _, err := p.EvaluateIndex(i); err != nil {
						t.Fatal(err)
					}
				}
				enc, err := p.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				if enc[0] != 3 || int(enc[3])<<8|int(enc[4]) != bits {
					t.Fatalf("header %x, want version 3 and %d bits", enc[:5], bits)
				}
				// A state written as version 2 before decodes to the same.
				var old PPRF
				if err := old.UnmarshalBinary(legacyEncoding(p)); err != nil {
					t.Fatalf("version 2: %v", err)
				}
				if again, _ := old.MarshalBinary(); !bytes.Equal(enc, again) {
					t.Fatal("the version 2 encoding decodes to another state")
				}
				var q PPRF
				if err := q.UnmarshalBinary(enc); err != nil {
					t.Fatal(err)
				}
				if q.Bits() != bits || q.Len() != p.Len() {
					t.Fatalf("decoded %d bits, %d secrets; want %d, %d", q.Bits(), q.Len(), bits, p.Len())
				}
				if again, _ := q.MarshalBinary(); !bytes.Equal(enc, again) {
					t.Fatal("re-encoding differs")
				}
				for _, i := range used {
					if _, err := q.EvaluateIndex(i); !errors.Is(err, ErrPunctured) {
						t.Fatalf("decoded state re-evaluated index %d: %v", i, err)
					}
				}
				for i := range uint64(min(1<<bits, 8)) {
					if slices.Contains(used, i) {
						continue
					}
					got, err := q.EvaluateIndex(i)
					if err != nil || !bytes.Equal(got, referenceIndex(s, key, i, bits)) {
						t.Fatalf("decoded state, index %d: %x, %v", i, got, err)
					}
				}
			})
		}
	}
}

// TestEncodingKnownAnswer pins the encodings. The version 1 values were
// taken before indexed PPRFs existed, and the version 1 and 2 ones before
// version 3: they show that what those versions wrote is still what
// legacyEncoding writes, and (in the round-trip tests) that it decodes.
func TestEncodingKnownAnswer(t *testing.T) {
	s := suite1(t)
	key := seq(32, 0)
	const secret = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

	p, _ := New(s, key)
	enc, _ := p.MarshalBinary()
	if got, want := hex.EncodeToString(enc), "030001"+"0100"+"0140"+"20"+secret; got != want {
		t.Errorf("fresh state:\n%s\nwant\n%s", got, want)
	}
	if got, want := hex.EncodeToString(legacyEncoding(p)), "010001"+"24"+"0000"+"00"+"20"+secret; got != want {
		t.Errorf("fresh v1 state:\n%s\nwant\n%s", got, want)
	}
	for _, in := range [][]byte{seq(32, 0x40), make([]byte, 32)} {
		if _, err := p.Evaluate(in); err != nil {
			t.Fatal(err)
		}
	}
	// Two punctures leave 509 frontier nodes: 16,288 bytes of secrets.
	if p.Len() != 509 {
		t.Errorf("%d frontier nodes after two evaluations, want 509", p.Len())
	}
	enc, _ = p.MarshalBinary()
	const usedHash = "dd336967209faa563e900c4023bb3fd3d214752255492f0c0903a907ed4f4aa1"
	if sum := sha256.Sum256(enc); len(enc) != 16553 || hex.EncodeToString(sum[:]) != usedHash {
		t.Errorf("state after two evaluations: %d bytes, SHA-256 %x", len(enc), sum)
	}
	v1 := legacyEncoding(p)
	const usedHead = "0100018000689101002000000000000000000000000000000000000000000000000000000000000000012085" +
		"9e78d2f0480ae29b4d2c85b4ff35d9de8e3d6ec07443750937e5afbccca40600ff200000"
	const usedHashV1 = "a56b3643d3fe3b0df74c9cad296c9f8dc8122c5e293c56a6ade525fef39b31d1"
	if sum := sha256.Sum256(v1); len(v1) != 26776 || hex.EncodeToString(v1[:80]) != usedHead || hex.EncodeToString(sum[:]) != usedHashV1 {
		t.Errorf("v1 state after two evaluations: %d bytes, starts %x, SHA-256 %x", len(v1), v1[:80], sum)
	}

	q, _ := NewIndexed(s, key, 6)
	enc, _ = q.MarshalBinary()
	if got, want := hex.EncodeToString(enc), "030001"+"0006"+"0140"+"20"+secret; got != want {
		t.Errorf("fresh indexed state:\n%s\nwant\n%s", got, want)
	}
	if got, want := hex.EncodeToString(legacyEncoding(q)), "020001"+"0006"+"24"+"0000"+"00"+"20"+secret; got != want {
		t.Errorf("fresh v2 state:\n%s\nwant\n%s", got, want)
	}
	// Leaf 5 is 000101. Its copath, one sibling per level, is 1, 01, 001,
	// 0000, 00011 and 000100; in leaf order: 0000, 000100, 00011, 001,
	// 01, 1.
	if _, err := q.EvaluateIndex(5); err != nil {
		t.Fatal(err)
	}
	var got []string
	r := codec.NewReader(legacyEncoding(q)[5:])
	r.Each("nodes", func(r *codec.Reader) {
		d := r.Uint16("depth")
		pre := r.Opaque("prefix")
		r.Opaque("secret")
		got = append(got, strconv.Itoa(int(d))+":"+hex.EncodeToString(pre))
	})
	want := []string{"4:00", "6:10", "5:18", "3:20", "2:40", "1:80"}
	if r.Finish("state") != nil || !slices.Equal(got, want) {
		t.Errorf("nodes after leaf 5: %v, %v; want %v", got, r.Err(), want)
	}
	// The same in version 3's walk: split at 0, 00, 000 and 0000's parent
	// (10 10 10 10), 0000 frontier, split at 0001 and 00010 (01 10 10),
	// 000100 frontier, 000101 empty, then 00011, 001, 01 and 1 frontier
	// (01 00 01 01 01 01).
	enc, _ = q.MarshalBinary()
	if shape := hex.EncodeToString(enc[5:10]); shape != "04aa691540" {
		t.Errorf("shape after leaf 5: %s, want 04aa691540", shape)
	}
}
