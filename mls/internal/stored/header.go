package stored

import (
	"fmt"
	"slices"
	"strings"

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
	_, s := ReadHeaderVersions(r, name, invalid, version)
	return s
}

// ReadHeaderVersions is ReadHeader for a package that decodes several
// layouts: it accepts any of versions and also returns the version read,
// which selects the layout of the rest. It returns 0 and nil once r has
// failed.
func ReadHeaderVersions(r *codec.Reader, name string, invalid error, versions ...uint8) (uint8, *suite.Suite) {
	v := r.Uint8(name + ".version")
	id := suite.ID(r.Uint16(name + ".cipher_suite"))
	if r.Err() != nil {
		return 0, nil
	}
	if !slices.Contains(versions, v) {
		r.Fail(name+".version", fmt.Errorf("%w: format version %d, want %s", invalid, v, orList(versions)))
		return 0, nil
	}
	s, err := suite.Lookup(id)
	if err != nil {
		r.Fail(name+".cipher_suite", fmt.Errorf("%w: %w", invalid, err))
		return 0, nil
	}
	return v, s
}

// orList formats versions as "1", "1 or 2", "1, 2 or 3" for error messages.
func orList(versions []uint8) string {
	s := make([]string, len(versions))
	for i, v := range versions {
		s[i] = fmt.Sprint(v)
	}
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
