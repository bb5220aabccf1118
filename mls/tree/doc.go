// Package tree is the public ratchet tree of RFC 9420 (§4, §7): the array of
// leaf and parent nodes that every member of a group holds identically,
// with no private keys in it.
//
// It owns the tree's shape and contents (blank nodes, unmerged leaves,
// resolutions, filtered direct paths, extension and truncation), the tree
// hashes of §7.8 and the parent hashes of §7.9, the changes that proposals
// and UpdatePaths make to a tree (§12.1.1–§12.1.3, §7.5), the validation a
// joiner performs on a received tree (§7.9.2, §12.4.3.1), and the validation
// of a single LeafNode (§7.3) and KeyPackage (§10.1). The private keys of a
// member and the encryption of path secrets belong to package treekem.
//
// # Values and cost
//
// A Tree holds its nodes as pointers to message.Node values that it never
// modifies: a change replaces the pointer. The pointers and the cached
// tree hashes live in copy-on-write chunks, each a subtree six levels high
// (63 nodes), so Clone copies one pointer per chunk and a commit processed
// on a clone copies only the chunks its paths touch, one per six levels of
// a path, while the tree of the previous epoch stays usable (DESIGN §4). Callers must treat the nodes they read from a Tree as
// read-only for the same reason.
//
// Each node's tree hash is cached. A change clears the cache of the changed
// node and its ancestors only, so the root hash after a commit costs one
// hash per level of the changed paths, not one per node. Extending the tree
// keeps every cached hash (the old tree becomes the left subtree with the
// same node indices), and truncating keeps those of the surviving half.
//
// The encryption keys of all nodes and the signature keys of the leaves
// are indexed in persistent hash tries, and the members' credential types
// are counted, all kept up to date by every change and shared between
// clones like the chunks. The uniqueness and credential rules a commit is
// checked against (CheckNewLeaf, NodeWithEncryptionKey,
// LeafWithSignatureKey, CredentialTypes, SupportedByAllMembers) therefore
// cost lookups, not passes over the tree: processing a commit in a group
// of n members is O(log n) apart from the cryptography.
//
// Verifying the parent hashes of a whole tree is linear in its size: each
// non-blank parent is checked top-down against the nodes of its children's
// resolutions, and the original sibling tree hash is the cached tree hash
// unless the parent has unmerged leaves under that sibling, in which case
// only the paths to those leaves are rehashed. Leaf signatures, nearly all
// the cost of validating a joined tree, are verified on runtime.GOMAXPROCS
// goroutines while the calling goroutine performs the other checks.
//
// A Tree is not safe for concurrent mutation; concurrent readers are fine
// once every hash they need has been computed (RootHash computes them all).
package tree
