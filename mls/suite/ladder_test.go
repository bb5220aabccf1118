package suite

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"math/big"
	"testing"
)

var fieldP = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

func (v fe64) big() *big.Int {
	var b [32]byte
	for i, l := range v {
		binary.BigEndian.PutUint64(b[24-8*i:], l)
	}
	return new(big.Int).SetBytes(b[:])
}

func fe64Big(x *big.Int) fe64 {
	var b [32]byte
	x.FillBytes(b[:])
	var v fe64
	for i := range v {
		v[i] = binary.BigEndian.Uint64(b[24-8*i:])
	}
	return v
}

// edgeValues are values in [0, 2^256) where a carry or borrow of the
// assembly's folds happens or nearly does, and some random ones.
func edgeValues(t testing.TB) []fe64 {
	two256 := new(big.Int).Lsh(big.NewInt(1), 256)
	var vs []fe64
	for _, base := range []*big.Int{big.NewInt(0), fieldP, new(big.Int).Lsh(big.NewInt(1), 255), two256} {
		for _, d := range []int64{-77, -76, -39, -38, -37, -20, -19, -18, -1, 0, 1, 18, 19, 37, 38, 39} {
			x := new(big.Int).Add(base, big.NewInt(d))
			if x.Sign() >= 0 && x.Cmp(two256) < 0 {
				vs = append(vs, fe64Big(x))
			}
		}
	}
	vs = append(vs, fe64{^uint64(0), 0, ^uint64(0), 0}, fe64{0, ^uint64(0), 0, ^uint64(0)})
	for range 16 {
		var b [32]byte
		rand.Read(b[:])
		vs = append(vs, fe64{binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:]),
			binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])})
	}
	return vs
}

// TestFieldOpsADX: the assembly's multiplication, addition, subtraction
// multiplication by 121665 and squaring agree with math/big modulo p for every
// pair of edge values, each result a value under 2^256 (any fe64 is).
func TestFieldOpsADX(t *testing.T) {
	if !useADX {
		t.Skip("this CPU or build has no assembly ladder")
	}
	vs := edgeValues(t)
	ops := []struct {
		name string
		want func(x, y *big.Int) *big.Int
	}{
		{"mul", func(x, y *big.Int) *big.Int { return new(big.Int).Mul(x, y) }},
		{"add", func(x, y *big.Int) *big.Int { return new(big.Int).Add(x, y) }},
		{"sub", func(x, y *big.Int) *big.Int { return new(big.Int).Sub(x, y) }},
		{"a24", func(x, _ *big.Int) *big.Int { return new(big.Int).Mul(x, big.NewInt(121665)) }},
		{"sqr", func(x, _ *big.Int) *big.Int { return new(big.Int).Mul(x, x) }},
	}
	for op, o := range ops {
		for _, x := range vs {
			for _, y := range vs {
				s := ladderState{x1: x, z2: y}
				fieldOpADX(op, &s)
				want := o.want(x.big(), y.big())
				want.Mod(want, fieldP)
				if got := new(big.Int).Mod(s.x2.big(), fieldP); got.Cmp(want) != 0 {
					t.Fatalf("%s(%x, %x) = %x (mod p %x), want %x", o.name, x.big(), y.big(), s.x2.big(), got, want)
				}
				if s.x1 != x || s.z2 != y {
					t.Fatalf("%s changed its operands", o.name)
				}
			}
		}
	}
}

// TestFe64Element: leaving the limb form reduces modulo p, for the edge
// values (2^256 - 1 folds twice).
func TestFe64Element(t *testing.T) {
	for _, v := range edgeValues(t) {
		e := v.element()
		want := new(big.Int).Mod(v.big(), fieldP)
		var b [32]byte
		want.FillBytes(b[:])
		for i, j := 0, 31; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		if !bytes.Equal(e.Bytes(), b[:]) {
			t.Fatalf("%x: element %x, want %x", v.big(), e.Bytes(), b)
		}
	}
}

// TestLadderADX: the assembly ladder's projective result is the generic
// one's (the same formulas, so the same x_2 and z_2 modulo p) for random
// scalars and points, points with the top bit set, non-canonical ones
// (p and above) and low-order ones.
func TestLadderADX(t *testing.T) {
	if !useADX {
		t.Skip("this CPU or build has no assembly ladder")
	}
	for i, u := range ladderPoints(t) {
		var k [32]byte
		rand.Read(k[:])
		clamp(k[:])
		checkLadders(t, &k, u)
		if i%8 == 0 {
			u = bytes.Clone(u)
			u[31] ^= 0x80
			checkLadders(t, &k, u)
		}
	}
}

// ladderPoints are u-coordinates to test a ladder on: the edge values,
// as points, and 200 public keys.
func ladderPoints(t testing.TB) [][]byte {
	var us [][]byte
	for _, v := range edgeValues(t) {
		var b [32]byte
		for i, l := range v {
			binary.LittleEndian.PutUint64(b[8*i:], l)
		}
		us = append(us, b[:])
	}
	for range 200 {
		k := make([]byte, 32)
		rand.Read(k)
		us = append(us, x25519Base(k))
	}
	return us
}

func checkLadders(t testing.TB, k *[32]byte, u []byte) {
	t.Helper()
	x2, z2, err := x25519LadderADX(k, u)
	gx2, gz2, gerr := x25519LadderGeneric(k, u)
	if (err == nil) != (gerr == nil) {
		t.Fatalf("k %x u %x: errors %v and %v", k, u, err, gerr)
	}
	if x2.Equal(&gx2) != 1 || z2.Equal(&gz2) != 1 {
		t.Fatalf("k %x u %x: assembly (%x : %x), generic (%x : %x)", k, u, x2.Bytes(), z2.Bytes(), gx2.Bytes(), gz2.Bytes())
	}
}

// FuzzLadderADX compares the two ladders on any scalar and point.
func FuzzLadderADX(f *testing.F) {
	if !useADX {
		f.Skip("this CPU or build has no assembly ladder")
	}
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, k, u []byte) {
		if len(k) != 32 || len(u) != 32 {
			return
		}
		var s [32]byte
		copy(s[:], k)
		clamp(s[:])
		checkLadders(t, &s, u)
	})
}
