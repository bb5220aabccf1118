// Package message defines the MLS wire structures of RFC 9420 and their
// exact encodings: MLSMessage and its framings, FramedContent and
// AuthenticatedContent, every proposal type, Commit, UpdatePath, LeafNode,
// KeyPackage, the ratchet tree extension, GroupContext, GroupInfo,
// GroupSecrets and Welcome.
//
// The package only encodes and decodes. It does not sign, encrypt, verify
// signatures or check protocol rules beyond what the syntax itself forbids
// (unknown enum values where the RFC gives no way to skip them, bad
// optional markers, trailing bytes); those checks belong to the packages
// that give the values meaning. Decoding is exact: every structure that
// decodes re-encodes to the same bytes, which the official "messages" test
// vectors check, and which signatures over re-encoded structures rely on.
//
// Unknown extension types, credential types and proposal types that the RFC
// allows to be carried opaquely (GREASE, §13.5) decode into their generic
// forms and re-encode unchanged.
package message
