package keyschedule

import "errors"

var (
	// ErrSecretLength means an input secret was not KDF.Nh bytes long.
	ErrSecretLength = errors.New("secret has the wrong length")
	// ErrUnknownInitScheme means an InitScheme this package does not
	// implement.
	ErrUnknownInitScheme = errors.New("unknown init scheme")
	// ErrExportLength means an MLS-Exporter length beyond what
	// ExpandWithLabel can produce.
	ErrExportLength = errors.New("exporter length too large")
	// ErrTooManyPSKs means more PSKs than PSKLabel's uint16 count can name.
	ErrTooManyPSKs = errors.New("too many PSKs")
	// ErrUnknownFormat means stored epoch state in a format version this
	// package does not know, or of a cipher suite it does not implement.
	ErrUnknownFormat = errors.New("unknown epoch state format")
	// ErrBadConfirmationTag means a confirmation tag that does not match
	// the epoch's confirmation key and the confirmed transcript hash.
	ErrBadConfirmationTag = errors.New("confirmation tag mismatch")
)
