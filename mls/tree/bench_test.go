package tree

import (
	"fmt"
	"testing"
)

var benchSizes = []int{10, 100, 1000, 10000}

var benchTrees = map[int]*Tree{}

func benchTree(b *testing.B, n int) *Tree {
	if tr, ok := benchTrees[n]; ok {
		return tr
	}
	tr, _ := buildTree(b, n)
	tr.RootHash()
	benchTrees[n] = tr
	return tr
}

// BenchmarkPathChangeTreeHash measures what a commit costs the public tree:
// clone it, install a new path for leaf 0 (parent hashes included) and
// recompute the root hash.
func BenchmarkPathChangeTreeHash(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("leaves=%d", n), func(b *testing.B) {
			tr := benchTree(b, n)
			keys := make([][]byte, len(tr.FilteredDirectPath(0)))
			for i := range keys {
				keys[i] = randomKey(b)
			}
			b.ResetTimer()
			for b.Loop() {
				c := tr.Clone()
				if _, err := c.SetPathKeys(0, keys); err != nil {
					b.Fatal(err)
				}
				c.RootHash()
			}
		})
	}
}

// BenchmarkValidate measures a joiner's full validation of a received tree:
// building it from the wire form, every tree hash, unmerged leaves, key
// uniqueness, parent hashes and every leaf (signatures in parallel).
func BenchmarkValidate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("leaves=%d", n), func(b *testing.B) {
			tr := benchTree(b, n)
			rt := tr.RatchetTree()
			opts := validateOpts(tr)
			b.ResetTimer()
			for b.Loop() {
				fresh, err := FromRatchetTree(tr.Suite(), rt)
				if err != nil {
					b.Fatal(err)
				}
				if err := fresh.Validate(opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
