// Package secrettree derives the symmetric keys that protect PrivateMessage
// content in one epoch (RFC 9420 §9): the secret tree grown from the
// epoch's encryption_secret, each member's handshake and application hash
// ratchets, and the sender-data key and nonce (§6.3.2), which come from the
// same epoch's sender_data_secret.
//
// The tree is derived lazily. A new Tree holds only the root secret; the
// first use of a leaf derives the secrets on the path from the deepest
// stored ancestor down to that leaf, keeps the off-path children, and
// deletes (zeroes) every parent secret it consumed, as the deletion schedule
// of §9.2 requires. A 16,384-leaf group therefore holds about 15 node
// secrets after its first message, not 32,767.
//
// Each ratchet hands out every generation at most once. A receiver may ask
// for a generation ahead of the ratchet, within Options.MaxForward
// (default 1000); the keys for the generations it skipped are retained for
// out-of-order delivery, at most Options.MaxRetained of them per ratchet
// (default 128, oldest dropped first). A generation that was already used,
// or whose retained key was dropped, fails with ErrGenerationConsumed; one
// too far ahead fails with ErrGenerationTooFar. Consumed keys, nonces and
// ratchet secrets are zeroed.
//
// Receive consumes a key only if the caller's use of it succeeds, so a
// forged or corrupted message cannot advance a ratchet or push retained
// keys out. A Tree is mutable and not safe for concurrent use; Clone makes
// an independent deep copy (sharing no memory, so zeroing in one copy never
// touches the other), which is how a caller keeps two branches of one
// epoch. MarshalBinary and UnmarshalBinary give a stable, versioned
// encoding of the whole state for storage.
package secrettree
