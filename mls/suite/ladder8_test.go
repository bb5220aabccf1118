package suite

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"math/big"
	"testing"
)

// TestLadder8: each lane of the eight-lane ladder gives the generic
// ladder's projective result (the same formulas, so the same x_2 and z_2
// modulo p) for batches of one to eight lanes of random scalars and
// points, points with the top bit set, non-canonical ones (p and above)
// and low-order ones.
func TestLadder8(t *testing.T) {
	if !useIFMA {
		t.Skip("this CPU or build has no AVX-512 IFMA")
	}
	var us [][]byte
	for _, u := range ladderPoints(t) {
		top := bytes.Clone(u)
		top[31] ^= 0x80
		us = append(us, u, top)
	}
	for n, at := 1, 0; at < len(us); n, at = n%ladder8Lanes+1, at+n {
		batch := us[at:min(at+n, len(us))]
		ks := make([]*[32]byte, len(batch))
		for i := range ks {
			ks[i] = new([32]byte)
			rand.Read(ks[i][:])
			clamp(ks[i][:])
		}
		checkLadder8(t, ks, batch)
	}
}

func checkLadder8(t testing.TB, ks []*[32]byte, us [][]byte) {
	t.Helper()
	x2, z2 := x25519Ladder8(ks, us)
	for l := range ks {
		gx2, gz2, err := x25519LadderGeneric(ks[l], us[l])
		if err != nil {
			t.Fatal(err)
		}
		if x2[l].Equal(&gx2) != 1 || z2[l].Equal(&gz2) != 1 {
			t.Fatalf("lane %d of %d: k %x u %x: eight-lane (%x : %x), generic (%x : %x)", l, len(ks), ks[l], us[l],
				x2[l].Bytes(), z2[l].Bytes(), gx2.Bytes(), gz2.Bytes())
		}
	}
}

// FuzzLadder8 compares the eight-lane ladder with the generic one on any
// scalar and point, in a batch of 1 to 8 lanes (k[1] says how many) whose
// other lanes take the scalar and point rotated.
func FuzzLadder8(f *testing.F) {
	if !useIFMA {
		f.Skip("this CPU or build has no AVX-512 IFMA")
	}
	f.Add(make([]byte, 32), make([]byte, 32))
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, k, u []byte) {
		if len(k) != 32 || len(u) != 32 {
			return
		}
		n := 1 + int(k[1])%ladder8Lanes
		ks, us := make([]*[32]byte, n), make([][]byte, n)
		for l := range n {
			ks[l] = new([32]byte)
			copy(ks[l][:], append(k[l:], k[:l]...))
			clamp(ks[l][:])
			us[l] = append(bytes.Clone(u[l:]), u[:l]...)
		}
		checkLadder8(t, ks, us)
	})
}

// fe8Bound is the largest each limb of a value the eight-lane arithmetic
// stores can be (ladder8_amd64.s, CARRY): limb 0 under 2^51 + 19 * 2^12,
// the others under 2^51 + 2^12. Every operation takes such values and
// must give one.
var fe8Bound = [5]uint64{1<<51 + 19<<12 - 1, 1<<51 + 1<<12 - 1, 1<<51 + 1<<12 - 1, 1<<51 + 1<<12 - 1, 1<<51 + 1<<12 - 1}

func (v *fe8) big(l int) *big.Int {
	x := new(big.Int)
	for i := 4; i >= 0; i-- {
		x.Lsh(x, 51).Add(x, new(big.Int).SetUint64(v[i][l]))
	}
	return x
}

// TestField8Ops: the eight-lane multiplication, squaring, addition,
// subtraction and a24 multiply-add agree with math/big modulo p, lane by
// lane, on values at the limits the arithmetic allows (every limb at its
// bound, zero, one limb high) and random ones within them, and each
// result is within the same limits, so that no sequence of operations
// can overflow a limb or pass a limb over 52 bits to VPMADD52.
func TestField8Ops(t *testing.T) {
	if !useIFMA {
		t.Skip("this CPU or build has no AVX-512 IFMA")
	}
	var values [][5]uint64
	values = append(values, fe8Bound, [5]uint64{}, [5]uint64{1})
	for i := range 5 {
		v := [5]uint64{}
		v[i] = fe8Bound[i]
		values = append(values, v)
		w := fe8Bound
		w[i] = 0
		values = append(values, w)
	}
	for range 64 {
		var v [5]uint64
		var b [8]byte
		for i := range v {
			rand.Read(b[:])
			v[i] = binary.LittleEndian.Uint64(b[:]) % (fe8Bound[i] + 1)
		}
		values = append(values, v)
	}
	ops := []struct {
		name string
		want func(x, z *big.Int) *big.Int
	}{
		{"mul", func(x, z *big.Int) *big.Int { return new(big.Int).Mul(x, z) }},
		{"add", func(x, z *big.Int) *big.Int { return new(big.Int).Add(x, z) }},
		{"sub", func(x, z *big.Int) *big.Int { return new(big.Int).Sub(x, z) }},
		{"a24", func(x, z *big.Int) *big.Int { return new(big.Int).Add(z, new(big.Int).Mul(x, big.NewInt(121665))) }},
		{"sqr", func(x, _ *big.Int) *big.Int { return new(big.Int).Mul(x, x) }},
	}
	for op, o := range ops {
		// Lane l takes x values[i+l] and z values[j], so every pair
		// meets in some lane.
		for i := 0; i < len(values); i += ladder8Lanes {
			for j := range values {
				s := new(ladder8State)
				for l := range ladder8Lanes {
					x := values[(i+l)%len(values)]
					for k := range 5 {
						s.x1[k][l], s.z2[k][l] = x[k], values[j][k]
					}
				}
				field8OpIFMA(op, s)
				for l := range ladder8Lanes {
					want := o.want(s.x1.big(l), s.z2.big(l))
					want.Mod(want, fieldP)
					if got := new(big.Int).Mod(s.x2.big(l), fieldP); got.Cmp(want) != 0 {
						t.Fatalf("%s lane %d (%x, %x) = %x mod p, want %x", o.name, l, s.x1.big(l), s.z2.big(l), got, want)
					}
					for k := range 5 {
						if s.x2[k][l] > fe8Bound[k] {
							t.Fatalf("%s lane %d (%x, %x): limb %d is %#x, over its bound %#x", o.name, l,
								s.x1.big(l), s.z2.big(l), k, s.x2[k][l], fe8Bound[k])
						}
					}
				}
			}
		}
	}
}
