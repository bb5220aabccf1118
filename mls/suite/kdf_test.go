package suite

import (
	"bytes"
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestKDFMatchesStandardLibrary checks the pooled HMAC and HKDF against
// crypto/hmac and crypto/hkdf: keys shorter than, equal to and longer than
// a block, an empty salt, and outputs of one block, part of one and
// several, with states reused across calls in between.
func TestKDFMatchesStandardLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	bytesOf := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		k := kdfFor(h)
		block := h.New().BlockSize()
		for _, keyLen := range []int{0, 1, h.Size(), block - 1, block, block + 1, 3 * block} {
			for _, length := range []int{1, h.Size() - 1, h.Size(), h.Size() + 1, 5*h.Size() + 3} {
				t.Run(fmt.Sprintf("%v/key=%d/length=%d", h, keyLen, length), func(t *testing.T) {
					key, data := bytesOf(keyLen), bytesOf(rng.IntN(300))
					m := hmac.New(h.New, key)
					m.Write(data)
					if got, want := k.mac(key, data), m.Sum(nil); !bytes.Equal(got, want) {
						t.Fatalf("mac: %x, want %x", got, want)
					}
					prk, err := hkdf.Extract(h.New, data, key)
					if err != nil {
						t.Fatal(err)
					}
					if got := k.extract(key, data); !bytes.Equal(got, prk) {
						t.Fatalf("extract: %x, want %x", got, prk)
					}
					want, err := hkdf.Expand(h.New, prk, string(data), length)
					if err != nil {
						t.Fatal(err)
					}
					if got := k.expand(prk, data, length); !bytes.Equal(got, want) || cap(got) != length {
						t.Fatalf("expand: %x (cap %d), want %x", got, cap(got), want)
					}
				})
			}
		}
	}
}
