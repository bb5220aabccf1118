// Package stored holds the header that the storage encodings of the MLS
// packages start with: a format version, so that a layout can change while
// rows written by older binaries stay readable, and the cipher suite, which
// fixes the sizes of every secret and key that follows.
//
//	struct {
//	    uint8 version;
//	    CipherSuite cipher_suite;
//	    ...                        // the package's own layout
//	} StoredState;
//
// These encodings are for storage only, never for the wire; they are
// secret whenever the state holds private keys.
package stored
