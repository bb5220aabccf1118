package stored

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// WriteHeader writes the version and the suite's number.
func WriteHeader(w *codec.Writer, version uint8, id suite.ID) {
	w.Uint8(version)
	w.Uint16(uint16(id))
}

// ReadHeader reads a header written by WriteHeader and returns the suite.
// A version other than version fails r with an error wrapping invalid (the
// calling package's sentinel for a bad stored state), and so does an
// unknown suite, which wraps suite.ErrUnsupportedSuite too. name prefixes
// the field names in decode errors. It returns nil once r has failed.
func ReadHeader(r *codec.Reader, name string, version uint8, invalid error) *suite.Suite {
	v := r.Uint8(name + ".version")
	id := suite.ID(r.Uint16(name + ".cipher_suite"))
	if r.Err() != nil {
		return nil
	}
	if v != version {
		r.Fail(name+".version", fmt.Errorf("%w: format version %d, want %d", invalid, v, version))
		return nil
	}
	s, err := suite.Lookup(id)
	if err != nil {
		r.Fail(name+".cipher_suite", fmt.Errorf("%w: %w", invalid, err))
		return nil
	}
	return s
}
