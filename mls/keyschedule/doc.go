// Package keyschedule implements the MLS key schedule of RFC 9420 §8: from
// the previous epoch's init_secret, the commit_secret, the psk_secret and
// the new GroupContext it derives the joiner_secret, the welcome_secret and
// the epoch_secret, and from that every secret an epoch uses. It also
// computes psk_secret from a list of pre-shared keys (§8.4), the
// MLS-Exporter (§8.5), the external HPKE key pair (§8) and the Welcome key
// and nonce (§12.4.3.1).
//
// An epoch's secrets are an Epoch: a plain value that is the same for every
// member of the group, so one copy can serve many of our devices, and that
// encodes to a versioned binary form for storage. Deriving the next epoch
// never changes the previous Epoch value, so callers can keep several
// branches of a group side by side (DESIGN §4, §5). The epoch_secret itself
// is not kept: it would let anyone holding the stored state re-derive
// whatever a forward-secure init scheme has deleted.
//
// How an epoch's successor obtains its init_secret is an InitScheme. The
// default, and the only one implemented, is RFC 9420's
// init_secret = DeriveSecret(epoch_secret, "init"). The seam exists because
// Decentralised MLS replaces that step by a puncturable PRF, so that an old
// epoch kept for a fork cannot start the same child twice; see init.go.
//
// Inputs and outputs are byte strings; GroupContext arrives already encoded
// (codec.Marshal of a message.GroupContext) and PreSharedKeyIDs as any
// codec.Marshaler, so that this package depends only on the suite and codec.
package keyschedule
