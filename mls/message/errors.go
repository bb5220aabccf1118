package message

import "errors"

// Rejection reasons beyond the codec's own. Each names a value that the
// syntax gives no way to skip: the bytes that follow an unknown selector
// have no length, so decoding cannot continue past it.
var (
	// ErrUnsupportedVersion means an MLSMessage carried a protocol version
	// other than mls10; the layout of its body is unknown.
	ErrUnsupportedVersion = errors.New("unsupported protocol version")
	// ErrUnknownWireFormat means an MLSMessage had a wire format this
	// package cannot decode.
	ErrUnknownWireFormat = errors.New("unknown wire format")
	// ErrUnknownContentType means a content type other than application,
	// proposal or commit.
	ErrUnknownContentType = errors.New("unknown content type")
	// ErrUnknownSenderType means a sender type other than the four of §6.
	ErrUnknownSenderType = errors.New("unknown sender type")
	// ErrUnknownProposalType means a proposal type outside RFC 9420's
	// seven. Proposal bodies carry no length, so an unknown one cannot be
	// skipped, and §13.5 forbids GREASE values in this field.
	ErrUnknownProposalType = errors.New("unknown proposal type")
	// ErrUnknownProposalOrRefType means a ProposalOrRef selector other than
	// proposal or reference.
	ErrUnknownProposalOrRefType = errors.New("unknown proposal-or-ref type")
	// ErrUnknownCredentialType means a credential type other than basic or
	// x509. Like proposals, credentials carry no length, and §13.5 forbids
	// GREASE values here.
	ErrUnknownCredentialType = errors.New("unknown credential type")
	// ErrUnknownLeafNodeSource means a leaf_node_source other than
	// key_package, update or commit.
	ErrUnknownLeafNodeSource = errors.New("unknown leaf node source")
	// ErrUnknownNodeType means a ratchet tree node that is neither a leaf
	// nor a parent.
	ErrUnknownNodeType = errors.New("unknown node type")
	// ErrUnknownPSKType means a PreSharedKeyID that is neither external nor
	// resumption.
	ErrUnknownPSKType = errors.New("unknown PSK type")
	// ErrNonZeroPadding means the padding of a PrivateMessageContent held a
	// non-zero byte, which §6.3.1 requires receivers to reject.
	ErrNonZeroPadding = errors.New("non-zero padding")
)
