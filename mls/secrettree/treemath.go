package secrettree

import "math/bits"

// The secret tree has the shape of the ratchet tree, which RFC 9420 keeps
// full: 2^d leaves, leaf i at node 2i, parents at odd indices (Appendix C).
// Only the few index functions the derivation needs live here.

// level is the height of node x above the leaves: the number of trailing
// one bits of its index.
func level(x uint32) int { return bits.TrailingZeros32(^x) }

// rootOf returns the root node of a full tree with n leaves.
func rootOf(n uint32) uint32 { return n - 1 }

func leftOf(x uint32) uint32 { return x ^ (1 << (level(x) - 1)) }

func rightOf(x uint32) uint32 { return x ^ (3 << (level(x) - 1)) }

// span returns the first and last node index under x, inclusive.
func span(x uint32) (uint32, uint32) {
	half := uint32(1)<<level(x) - 1
	return x - half, x + half
}

func leafNode(leaf uint32) uint32 { return 2 * leaf }
