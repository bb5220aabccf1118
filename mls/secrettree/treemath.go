package secrettree

import "github.com/mls-appservice/mls-appservice/mls/treemath"

// The secret tree has the shape of the ratchet tree (RFC 9420 Appendix C);
// these adapt mls/treemath to the plain uint32 node indices used as map
// keys here.

func level(x uint32) uint32 { return treemath.NodeIndex(x).Level() }

func rootOf(n uint32) uint32 { return uint32(treemath.LeafCount(n).Root()) }

// leftOf and rightOf are only called on parent nodes.
func leftOf(x uint32) uint32 {
	l, _ := treemath.Left(treemath.NodeIndex(x))
	return uint32(l)
}

func rightOf(x uint32) uint32 {
	r, _ := treemath.Right(treemath.NodeIndex(x))
	return uint32(r)
}

func leafNode(leaf uint32) uint32 { return uint32(treemath.LeafIndex(leaf).Node()) }

// span returns the first and last node index under x, inclusive.
func span(x uint32) (uint32, uint32) {
	half := uint32(1)<<level(x) - 1
	return x - half, x + half
}
