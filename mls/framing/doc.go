// Package framing turns AuthenticatedContent into protected messages and
// back (RFC 9420 §6) and keeps the transcript hashes that chain an epoch's
// commits together (§8.2).
//
// It signs and verifies FramedContentTBS, computes and checks the
// membership tag of a PublicMessage, encrypts and decrypts PrivateMessage
// content with keys from a secrettree.Tree (applying the reuse guard and
// the padding rules), and encrypts and decrypts the sender data with the
// key derived from sender_data_secret and a sample of the ciphertext.
//
// Framing checks what the message itself proves: group and epoch, the
// membership tag, AEAD integrity, padding, and the signature against the
// key the caller names for the sender. It does not know the ratchet tree,
// so the caller resolves senders to signature keys, and it does not check
// a commit's confirmation tag on receipt, because that needs the
// confirmation key of the epoch the commit creates; the group layer calls
// VerifyConfirmationTag once it has processed the commit.
//
// Every rejection reason has its own sentinel error so that callers (and
// tests) can tell a replay from a forgery from a message for another epoch.
// UnprotectPrivate consumes a ratchet generation only when the whole
// message, signature included, is authentic, so a forged message cannot
// burn a genuine sender's key.
package framing
