package epochs

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidEpoch means an epoch's identity is malformed (no dmls_epoch,
	// an identifier longer than any suite's KDF.Nh).
	ErrInvalidEpoch = errors.New("epochs: invalid epoch")
	// ErrDuplicateEpoch means the graph already holds an epoch with that
	// dmls_epoch.
	ErrDuplicateEpoch = errors.New("epochs: epoch already known")
	// ErrUnknownEpoch means the graph does not hold that epoch.
	ErrUnknownEpoch = errors.New("epochs: unknown epoch")
	// ErrParentNotRetained means a commit's base epoch is unknown or was
	// dropped, so the commit cannot be applied.
	ErrParentNotRetained = errors.New("epochs: parent epoch not retained")
	// ErrBeforeRetained is the ErrParentNotRetained of a commit whose own
	// epoch is no newer than every epoch the member retains: history from
	// before its devices joined (a joiner reading the timeline back), or
	// of epochs it dropped. Nothing was refused: every retained epoch
	// already follows from it or from a sibling.
	ErrBeforeRetained = fmt.Errorf("%w: commit older than every retained epoch", ErrParentNotRetained)
	// ErrEpochNumber means a child's epoch number is not its parent's plus
	// one.
	ErrEpochNumber = errors.New("epochs: epoch number does not follow parent")
	// ErrDropHead means a caller tried to drop a head, which retention
	// never does.
	ErrDropHead = errors.New("epochs: cannot drop a head")
	// ErrEchoed means a caller tried to withdraw a commit of ours that
	// was confirmed (Member.Confirm): the room accepted it.
	ErrEchoed = errors.New("epochs: commit confirmed, cannot withdraw")
	// ErrNoHeads means the graph holds no epoch to build on.
	ErrNoHeads = errors.New("epochs: no heads")
	// ErrInvalidGraph means an encoded graph is well formed but violates
	// an invariant.
	ErrInvalidGraph = errors.New("epochs: invalid graph encoding")
	// ErrLoad means a retained epoch's stored parts did not load: the
	// Loader failed (a database error, a value that does not open) or
	// what it returned does not decode. It is a fault of our own storage,
	// not of the event that needed the epoch: a caller retries or reports
	// it and never refuses the event for it.
	ErrLoad = errors.New("epochs: stored epoch does not load")

	// ErrUnauthorisedAdd rejects a commit that adds a device whose user is
	// neither joined nor invited at the commit's point of the room.
	ErrUnauthorisedAdd = errors.New("epochs: commit adds a device of a user not joined or invited")
	// ErrStaleMember rejects a commit that leaves in a device whose user
	// has left the room when the commit was due to remove it.
	ErrStaleMember = errors.New("epochs: commit leaves in a device of a user who has left")
)
