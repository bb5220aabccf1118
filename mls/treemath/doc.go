// Package treemath computes the relationships between the nodes of an MLS
// ratchet tree stored as a flat array (RFC 9420 §4.1, §7.8 and Appendix C).
//
// In that layout leaf i sits at node 2i and parent nodes at odd indices, so
// parents, children, siblings, direct paths and copaths follow from bit
// operations on the indices alone. RFC 9420 keeps the tree full: its leaf
// count is always a power of two. The functions here assume that and accept
// leaf counts from 1 to MaxLeaves; for other counts they do not panic, but
// their answers are meaningless.
//
// Everything is arithmetic on uint32 values and allocates nothing, except the
// path functions, which come in two forms: DirectPath and Copath return a new
// slice, and AppendDirectPath and AppendCopath reuse the caller's, for loops
// over large trees. A node that does not exist (the parent of the root, a
// child of a leaf, an index beyond the tree) is reported by a false second
// result rather than a panic, because indices often come from the network.
package treemath
