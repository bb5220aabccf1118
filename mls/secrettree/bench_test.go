package secrettree

import (
	"fmt"
	"testing"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// BenchmarkKey measures deriving one receive key in a fresh 32-leaf tree,
// path derivation included, at generation 0 and at generation 1000 (the
// default forward limit, which also fills the retained-key window).
func BenchmarkKey(b *testing.B) {
	for _, s := range suite.All() {
		secret := make([]byte, s.HashSize())
		for _, gen := range []uint32{0, 1000} {
			b.Run(fmt.Sprintf("suite=%d/generation=%d", s.ID(), gen), func(b *testing.B) {
				for b.Loop() {
					tree, err := New(s, secret, 32, Options{})
					if err != nil {
						b.Fatal(err)
					}
					if err := tree.Receive(17, Application, gen, func(Key) error { return nil }); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
