package pprf

import "errors"

var (
	// ErrPunctured means the input was evaluated before (or lies in a
	// subtree that was removed), so its output can no longer be derived.
	ErrPunctured = errors.New("pprf: input already punctured")
	// ErrInputLength means a key is not KDF.Nh bytes long, or an input is
	// not the leaf path Evaluate expects: ceil(Bits()/8) bytes with no bit
	// set past Bits().
	ErrInputLength = errors.New("pprf: wrong input length")
	// ErrIndexRange means an index given to EvaluateIndex is 2^Bits() or
	// more, so no leaf has it.
	ErrIndexRange = errors.New("pprf: index out of range")
	// ErrLeafDepth means a leaf depth the operation does not support:
	// NewIndexed takes 1 to 32 bits, and the DMLS derivations need the
	// 8·KDF.Nh bits of New.
	ErrLeafDepth = errors.New("pprf: unsupported leaf depth")
	// ErrInvalidState means an encoded state is well formed but violates
	// an invariant (sizes, ordering, disjointness, version).
	ErrInvalidState = errors.New("pprf: invalid state")
	// ErrNoUpdatePath means a commit in a DMLS group carries no update
	// path, so it has no path_secret[n] to confirm; see the package doc.
	ErrNoUpdatePath = errors.New("pprf: DMLS commit without update path")
)
