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
// Unknown values are handled as the RFC's extensibility rules (§13, §13.5)
// and the syntax allow. Where a value has a length or a fixed size it
// decodes unchanged, whatever it is: extension types and data (so GREASE
// extensions round-trip), the type lists of Capabilities and
// RequiredCapabilities, cipher suites, key-package versions, PSK usages.
// Where a value selects a body that carries no length, decoding cannot go
// on past an unknown one and rejects it with a distinct error:
// proposal_type (ErrUnknownProposalType), credential_type
// (ErrUnknownCredentialType), wire_format, content_type, sender_type,
// leaf_node_source, node_type, psktype and the ProposalOrRef type. §13.5
// forbids GREASE in proposal_type and credential_type for exactly this
// reason. An MLSMessage whose version is not mls10 is rejected
// (ErrUnsupportedVersion), as its body's layout is unknown.
//
// Types with a selector (MLSMessage, FramedContent, Proposal,
// ProposalOrRef, Node, LeafNode, Sender, PreSharedKeyID, Credential) are
// structs with the selector and one field or pointer per body kind, rather
// than interfaces: callers switch on the selector and read the matching
// field, and decoding leaves the other bodies nil. Encoding a value whose
// selector names a nil body is a programming error and panics; decoding
// never panics.
//
// Structures whose layout depends on context outside their own bytes are
// not codec.Marshalers: FramedContentAuthData takes the content type
// (MarshalMLSFor, UnmarshalMLSFor), and PrivateMessageContent is decoded
// with UnmarshalPrivateMessageContent. The to-be-signed encodings are
// FramedContentTBS and AuthenticatedContentTBM (built, never decoded) and
// the TBS methods of LeafNode, KeyPackage and GroupInfo.
package message
