package group

import "errors"

// Each rejection reason has its own sentinel, so that callers (and tests)
// can tell an attack from a bug from a message that simply is not for us.
// Errors from the packages below (framing, tree, treekem, welcome) are
// wrapped, not replaced, so their sentinels match too. A signature that
// does not verify (of a message, a GroupInfo, a LeafNode or a KeyPackage)
// matches suite.ErrBadSignature.
var (
	// ErrBadMembershipTag means a PublicMessage whose membership tag does
	// not match.
	ErrBadMembershipTag = errors.New("group: bad membership tag")
	// ErrBadConfirmationTag means a commit whose confirmation tag does not
	// match the epoch it leads to.
	ErrBadConfirmationTag = errors.New("group: bad confirmation tag")
	// ErrWrongGroup means a message for another group.
	ErrWrongGroup = errors.New("group: message for another group")
	// ErrWrongEpoch means a message for another epoch.
	ErrWrongEpoch = errors.New("group: message for another epoch")
	// ErrDecrypt means a PrivateMessage that does not decrypt.
	ErrDecrypt = errors.New("group: message does not decrypt")
	// ErrReplay means a PrivateMessage whose generation was used already:
	// a replay, or the same message processed twice (RFC 9420 §9.2: each
	// key is deleted once used).
	ErrReplay = errors.New("group: message generation already used")
	// ErrMalformed means a message that does not decode or breaks a rule
	// of its syntax.
	ErrMalformed = errors.New("group: malformed message")
	// ErrUnknownSender means a sender that is not a member or an allowed
	// external sender.
	ErrUnknownSender = errors.New("group: unknown sender")

	// ErrInvalidProposal means a proposal that is invalid on its own
	// (§12.1) or not allowed from its sender.
	ErrInvalidProposal = errors.New("group: invalid proposal")
	// ErrInvalidProposalList means a committed proposal list that breaks
	// §12.2; the more specific sentinels below are wrapped with it.
	ErrInvalidProposalList = errors.New("group: invalid proposal list")
	// ErrDuplicateAdd means two Adds of the same client, or an Add of a
	// client already in the group.
	ErrDuplicateAdd = errors.New("group: duplicate add")
	// ErrRemoveBlankLeaf means a Remove of a blank or non-existent leaf.
	ErrRemoveBlankLeaf = errors.New("group: remove of a blank leaf")
	// ErrDuplicateTarget means several Update or Remove proposals for
	// one leaf.
	ErrDuplicateTarget = errors.New("group: several updates or removes for one leaf")
	// ErrCommitterUpdate means a commit that includes its sender's own
	// Update proposal, or that removes its sender.
	ErrCommitterUpdate = errors.New("group: commit updates or removes its sender")
	// ErrInvalidUpdate means an Update whose LeafNode is not valid for the
	// leaf of the proposal's sender (e.g. it was made for another leaf).
	ErrInvalidUpdate = errors.New("group: invalid update")
	// ErrInvalidKeyPackage means an Add whose KeyPackage fails §10.1.
	ErrInvalidKeyPackage = errors.New("group: invalid key package")
	// ErrUnknownProposalRef means a commit referring to a proposal we
	// have not received in this epoch.
	ErrUnknownProposalRef = errors.New("group: unknown proposal reference")
	// ErrPathRequired means a commit without an UpdatePath whose
	// proposals require one.
	ErrPathRequired = errors.New("group: commit requires a path")
	// ErrInvalidPath means an UpdatePath whose LeafNode or keys are
	// invalid; parent-hash and key mismatches also match the tree and
	// treekem sentinels.
	ErrInvalidPath = errors.New("group: invalid update path")
	// ErrInvalidExternalCommit means an external commit that breaks the
	// rules of §12.2 for external commits.
	ErrInvalidExternalCommit = errors.New("group: invalid external commit")
	// ErrMissingPSK means a PSK that the commit or Welcome names and we
	// do not hold.
	ErrMissingPSK = errors.New("group: missing pre-shared key")
	// ErrUnsupported means an extension or proposal that a member does
	// not support.
	ErrUnsupported = errors.New("group: unsupported capability")

	// ErrOwnCommit means our own commit came back from the delivery
	// service; adopt it with HandlePendingCommit instead.
	ErrOwnCommit = errors.New("group: own commit; use HandlePendingCommit")
	// ErrStalePendingCommit means a pending commit made from another
	// state than the one adopting it.
	ErrStalePendingCommit = errors.New("group: pending commit from another state")
	// ErrNotMember means an operation that needs membership in a state
	// whose member was removed (or that has no private part).
	ErrNotMember = errors.New("group: not a member")
	// ErrNotApplication means a message OpenDeferred does not take: all
	// but an application PrivateMessage.
	ErrNotApplication = errors.New("group: not an application message")
	// ErrPendingProposals means an application message we may not send
	// yet: we have seen valid proposals in this epoch, and §12.4 requires
	// a commit before any application data.
	ErrPendingProposals = errors.New("group: proposals pending; commit before sending application data")
	// ErrReInitPending means the group was reinitialised: it must not be
	// used for new messages, only to start its successor.
	ErrReInitPending = errors.New("group: group reinitialised")

	// ErrNotForUs means a Welcome with no secrets for our KeyPackage.
	ErrNotForUs = errors.New("group: welcome is not for us")
	// ErrInvalidWelcome means a Welcome that cannot be opened or whose
	// group fails validation.
	ErrInvalidWelcome = errors.New("group: invalid welcome")
	// ErrMissingTree means a Welcome or GroupInfo without a ratchet tree
	// and none supplied out of band.
	ErrMissingTree = errors.New("group: no ratchet tree")
	// ErrResumptionPSK means a group joined as a reinitialisation or
	// branch whose Welcome does not carry the reinit or branch resumption
	// PSK of the old group's epoch (§11.2, §11.3, §12.4.3.1); it is
	// wrapped with ErrInvalidWelcome.
	ErrResumptionPSK = errors.New("group: welcome lacks the old group's resumption PSK")
	// ErrMemberMismatch means a reinitialised or branched group whose
	// members are not those of the old group (§11.2, §11.3,
	// §12.4.3.1); it is wrapped with ErrInvalidWelcome.
	ErrMemberMismatch = errors.New("group: members do not match the old group")
	// ErrInvalidGroupInfo means a GroupInfo whose signature, tree or
	// extensions are invalid.
	ErrInvalidGroupInfo = errors.New("group: invalid group info")
	// ErrInvalidState means an encoded state that does not decode.
	ErrInvalidState = errors.New("group: invalid stored state")
)
