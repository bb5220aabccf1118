package welcome

import "errors"

var (
	// ErrNotForUs means the Welcome holds no secrets for our KeyPackage.
	ErrNotForUs = errors.New("welcome has no secrets for our key package")
	// ErrSuiteMismatch means the Welcome, our KeyPackage and the GroupInfo
	// do not all name the same cipher suite.
	ErrSuiteMismatch = errors.New("welcome cipher suite mismatch")
	// ErrDecrypt means the group secrets or the group info did not
	// decrypt: the Welcome was altered, or made for a different key.
	ErrDecrypt = errors.New("welcome decryption failed")
	// ErrMalformed means a part of the Welcome did not decode or broke a
	// rule of its syntax.
	ErrMalformed = errors.New("malformed welcome")
	// ErrMissingPSK means the group secrets name a PSK we do not hold.
	ErrMissingPSK = errors.New("welcome needs a PSK we do not hold")
	// ErrBadPSKs means the PSK list breaks RFC 9420's rules on resumption
	// PSKs for reinitialisation and branching.
	ErrBadPSKs = errors.New("invalid PSKs in welcome")
	// ErrBadConfirmationTag means the GroupInfo's confirmation tag does
	// not match the epoch the joiner_secret leads to.
	ErrBadConfirmationTag = errors.New("bad group info confirmation tag")
)
