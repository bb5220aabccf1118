package suite

import (
	"bytes"
	"crypto/rand"
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
