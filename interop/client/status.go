package client

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// Sentinel errors of the service itself, for requests the group layer
// never sees.
var (
	// errUnknownHandle: a state, transaction, reinit or signer id that
	// the store does not hold (never issued, or freed).
	errUnknownHandle = errors.New("unknown handle")
	// errBadRequest: a request field that is not a valid encoding or
	// names something that does not exist (e.g. a member identity).
	errBadRequest = errors.New("bad request")
	// errNoPending: HandlePendingCommit without a preceding Commit.
	errNoPending = errors.New("no pending commit")
)

// rejection ties a group sentinel to the RFC 9420 rule it stands for, so
// that a peer (and the runner's log) learns why its message was refused.
type rejection struct {
	err    error
	code   codes.Code
	reason string
}

// rejections is ordered from specific to general: several group errors
// wrap a general sentinel together with a specific one.
var rejections = []rejection{
	{group.ErrBadMembershipTag, codes.InvalidArgument, "membership tag does not match (RFC 9420 §6.2)"},
	{group.ErrBadConfirmationTag, codes.InvalidArgument, "confirmation tag does not match (RFC 9420 §8.1, §12.4.2)"},
	{group.ErrWrongGroup, codes.InvalidArgument, "message for another group (RFC 9420 §6)"},
	{group.ErrWrongEpoch, codes.InvalidArgument, "message for another epoch (RFC 9420 §6)"},
	{group.ErrDecrypt, codes.InvalidArgument, "PrivateMessage does not decrypt (RFC 9420 §6.3)"},
	{group.ErrUnknownSender, codes.InvalidArgument, "sender is not a member or allowed external sender (RFC 9420 §6, §12.1.8)"},
	{group.ErrDuplicateAdd, codes.InvalidArgument, "duplicate Add (RFC 9420 §12.2)"},
	{group.ErrRemoveBlankLeaf, codes.InvalidArgument, "Remove of a blank leaf (RFC 9420 §12.1.3)"},
	{group.ErrDuplicateTarget, codes.InvalidArgument, "several Update/Remove proposals for one leaf (RFC 9420 §12.2)"},
	{group.ErrCommitterUpdate, codes.InvalidArgument, "commit updates or removes its own sender (RFC 9420 §12.2)"},
	{group.ErrInvalidUpdate, codes.InvalidArgument, "invalid Update proposal (RFC 9420 §12.1.2)"},
	{group.ErrInvalidKeyPackage, codes.InvalidArgument, "KeyPackage fails validation (RFC 9420 §10.1)"},
	{group.ErrUnknownProposalRef, codes.InvalidArgument, "commit refers to a proposal not received in this epoch (RFC 9420 §12.4.2)"},
	{group.ErrPathRequired, codes.InvalidArgument, "commit lacks a required UpdatePath (RFC 9420 §12.4)"},
	{group.ErrInvalidPath, codes.InvalidArgument, "invalid UpdatePath (RFC 9420 §7.5, §7.9, §12.4.2)"},
	{group.ErrInvalidExternalCommit, codes.InvalidArgument, "invalid external commit (RFC 9420 §12.2, §12.4.3.2)"},
	{group.ErrInvalidProposalList, codes.InvalidArgument, "invalid proposal list (RFC 9420 §12.2)"},
	{group.ErrInvalidProposal, codes.InvalidArgument, "invalid proposal (RFC 9420 §12.1)"},
	{group.ErrMissingPSK, codes.FailedPrecondition, "pre-shared key not known (RFC 9420 §8.4)"},
	{group.ErrUnsupported, codes.InvalidArgument, "extension or proposal not supported by a member (RFC 9420 §7.2, §12.1.7)"},
	{group.ErrNotForUs, codes.InvalidArgument, "Welcome has no secrets for our KeyPackage (RFC 9420 §12.4.3.1)"},
	{group.ErrMissingTree, codes.InvalidArgument, "no ratchet tree in the GroupInfo and none out of band (RFC 9420 §12.4.3.3)"},
	// A bad LeafNode or KeyPackage signature is reported as the invalid
	// proposal, path or KeyPackage above; that of a message or a GroupInfo
	// as what it is.
	{suite.ErrBadSignature, codes.InvalidArgument, "signature does not verify (RFC 9420 §5.1.2, §6.1)"},
	{group.ErrInvalidGroupInfo, codes.InvalidArgument, "invalid GroupInfo (RFC 9420 §12.4.3)"},
	{group.ErrResumptionPSK, codes.InvalidArgument, "Welcome lacks the old group's reinit or branch resumption PSK (RFC 9420 §11.2, §11.3, §12.4.3.1)"},
	{group.ErrMemberMismatch, codes.InvalidArgument, "members do not match the old group's (RFC 9420 §11.2, §11.3, §12.4.3.1)"},
	{group.ErrInvalidWelcome, codes.InvalidArgument, "invalid Welcome (RFC 9420 §12.4.3.1)"},
	{group.ErrMalformed, codes.InvalidArgument, "malformed message (RFC 9420 §6)"},
	{group.ErrOwnCommit, codes.FailedPrecondition, "own commit must be applied with HandlePendingCommit"},
	{group.ErrStalePendingCommit, codes.FailedPrecondition, "pending commit was made from another state"},
	{group.ErrNotMember, codes.FailedPrecondition, "state no longer belongs to a member"},
	{group.ErrPendingProposals, codes.FailedPrecondition, "proposals of this epoch must be committed before application data (RFC 9420 §12.4)"},
	{group.ErrReInitPending, codes.FailedPrecondition, "group was reinitialised; only its successor may be used (RFC 9420 §11.2)"},
	{suite.ErrUnsupportedSuite, codes.InvalidArgument, "unsupported cipher suite"},
	{errUnknownHandle, codes.NotFound, "unknown handle"},
	{errBadRequest, codes.InvalidArgument, "bad request"},
	{errNoPending, codes.FailedPrecondition, "no pending commit"},
}

// toStatus turns an error from the group layer or the service into a gRPC
// status whose code says who is at fault and whose message names the
// RFC rule and the full error chain.
func toStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, r := range rejections {
		if errors.Is(err, r.err) {
			return status.Error(r.code, fmt.Sprintf("%s: %s: %v", op, r.reason, err))
		}
	}
	return status.Error(codes.Internal, fmt.Sprintf("%s: %v", op, err))
}
