package tree

import "errors"

// Rejection reasons. Each is distinct so that callers and tests can tell
// them apart with errors.Is; the wrapping error says where.
var (
	// ErrMalformedTree means a ratchet tree's array does not describe a
	// tree: a leaf at a parent position or the reverse, a trailing blank,
	// an empty array, or more leaves than the tree can index.
	ErrMalformedTree = errors.New("tree: malformed ratchet tree")
	// ErrTreeHashMismatch means the tree's root hash is not the one the
	// group context commits to.
	ErrTreeHashMismatch = errors.New("tree: tree hash mismatch")
	// ErrParentHashMismatch means a parent node is not parent-hash valid,
	// or a committer's leaf carries the wrong parent hash.
	ErrParentHashMismatch = errors.New("tree: parent hash mismatch")
	// ErrUnmergedLeavesInvalid means an unmerged_leaves entry names a blank
	// leaf, a leaf outside the node's subtree, a leaf listed twice, or a
	// leaf missing from an intermediate node's list.
	ErrUnmergedLeavesInvalid = errors.New("tree: invalid unmerged leaves")
	// ErrDuplicateKey means an encryption or signature key appears in more
	// than one node.
	ErrDuplicateKey = errors.New("tree: duplicate key")
	// ErrLeafNodeInvalid means a LeafNode breaks a rule of §7.3. The more
	// specific errors below also match it.
	ErrLeafNodeInvalid = errors.New("tree: invalid leaf node")
	// ErrBadLeafSignature means a LeafNode's signature does not verify.
	ErrBadLeafSignature = errors.New("tree: bad leaf node signature")
	// ErrLifetime means the current time is outside a LeafNode's lifetime.
	ErrLifetime = errors.New("tree: leaf node outside its lifetime")
	// ErrUnsupportedCapability means a LeafNode's capabilities lack
	// something the group uses or requires, or lack one of its own
	// extensions or its credential type.
	ErrUnsupportedCapability = errors.New("tree: capability not supported")
	// ErrKeyPackageInvalid means a KeyPackage breaks a rule of §10.1.
	ErrKeyPackageInvalid = errors.New("tree: invalid key package")
	// ErrLeafOutOfRange means a leaf index is beyond the tree.
	ErrLeafOutOfRange = errors.New("tree: leaf index out of range")
	// ErrBlankLeaf means an operation needs a member at a leaf that is
	// blank.
	ErrBlankLeaf = errors.New("tree: leaf is blank")
	// ErrTreeFull means no leaf can be added without exceeding the largest
	// tree whose node indices fit a uint32.
	ErrTreeFull = errors.New("tree: tree is full")
	// ErrPathLength means an UpdatePath's node count differs from the
	// length of the sender's filtered direct path.
	ErrPathLength = errors.New("tree: update path length mismatch")
	// ErrInvalidState means a stored tree encoding is malformed.
	ErrInvalidState = errors.New("tree: invalid stored tree")
)
