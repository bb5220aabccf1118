// Package treekem is the private half of the ratchet tree (RFC 9420
// §7.4–§7.6): the HPKE private keys one member holds for its leaf and for
// the nodes of its direct path, the generation of an UpdatePath when that
// member commits, and the application of an UpdatePath another member sent.
//
// The public tree is package tree's; this package changes it only through
// tree.SetPathKeys, tree.SetLeaf and tree.MergeUpdatePath, so that the tree
// hashes and parent hashes stay that package's business. A PrivateState is
// a value: Generate and Apply return a new state and leave the receiver
// unchanged, so that a member can keep the keys of several branches of one
// group (DESIGN §4). PrivateState encodes separately from the public tree,
// because many of our devices may share one copy of a group's public state
// while each holds its own keys.
//
// The key derivations and HPKE encryptions of a path are independent
// scalar multiplications, the bulk of a commit's cost, and run on
// runtime.GOMAXPROCS goroutines. A committer's encryptions start before
// its path is merged: their Encap (an ephemeral key and one
// Diffie-Hellman) needs only the recipients' keys, and runs while the
// committer hashes the tree whose root the sealing context holds
// (pipeline.go).
//
// A service holds many members of one group, and they share the nodes
// above their leaves: PathKeys derives each node's key of a commit's path
// once for all of them, and KeyCheck checks each node's key once.
//
// Path secrets are used only to derive the next path secret and a node key
// pair, and are zeroed once consumed; only node private keys are kept, as
// §7.5 asks. The path secrets a committer needs for its Welcome are
// available from Generated until the caller zeroes it.
package treekem
