package pprf

import "errors"

var (
	// ErrPunctured means the input was evaluated before (or lies in a
	// subtree that was removed), so its output can no longer be derived.
	ErrPunctured = errors.New("pprf: input already punctured")
	// ErrInputLength means an input or key is not KDF.Nh bytes long.
	ErrInputLength = errors.New("pprf: wrong input length")
	// ErrInvalidState means an encoded state is well formed but violates
	// an invariant (sizes, ordering, disjointness, version).
	ErrInvalidState = errors.New("pprf: invalid state")
	// ErrNoUpdatePath means a commit in a DMLS group carries no update
	// path, so it has no path_secret[n] to confirm; see the package doc.
	ErrNoUpdatePath = errors.New("pprf: DMLS commit without update path")
)
