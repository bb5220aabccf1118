package treekem

import "errors"

var (
	// ErrNoDecryptionKey means the receiver holds no private key for any
	// node of the resolution the path secret was encrypted to, or is not
	// below the sender's filtered direct path at all.
	ErrNoDecryptionKey = errors.New("treekem: no private key for the update path")
	// ErrCiphertextCount means an UpdatePathNode carries a number of
	// encrypted path secrets other than the size of the copath resolution.
	ErrCiphertextCount = errors.New("treekem: wrong number of encrypted path secrets")
	// ErrDecrypt means the encrypted path secret did not decrypt.
	ErrDecrypt = errors.New("treekem: path secret decryption failed")
	// ErrPublicKeyMismatch means a key derived from a path secret differs
	// from the public key in the UpdatePath or the tree.
	ErrPublicKeyMismatch = errors.New("treekem: derived public key mismatch")
	// ErrOwnPath means a member was asked to apply its own UpdatePath,
	// which it cannot decrypt; it keeps the keys Generate returned.
	ErrOwnPath = errors.New("treekem: update path from own leaf")
	// ErrNotInTree means the member's leaf is blank or outside the tree.
	ErrNotInTree = errors.New("treekem: member's leaf is not in the tree")
	// ErrInvalidState means an encoded PrivateState is malformed.
	ErrInvalidState = errors.New("treekem: invalid private state")
)
