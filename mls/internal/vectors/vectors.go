package vectors

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the directory that holds the official test vectors. The
// environment variable MLS_TEST_VECTORS overrides the default location.
func Dir() (string, error) {
	if d := os.Getenv("MLS_TEST_VECTORS"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared", "mls-test-vectors"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("vectors: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Load decodes the named vector file into v, failing the test if the file is
// missing: a missing vector file is a broken checkout, never a skip.
func Load(t testing.TB, name string, v any) {
	t.Helper()
	if err := LoadPath(name, v); err != nil {
		t.Fatal(err)
	}
}

// LoadPath decodes the vector file name (resolved against Dir unless it is
// an absolute or explicitly relative path) into v.
func LoadPath(name string, v any) error {
	path := name
	if !filepath.IsAbs(name) && filepath.Base(name) == name {
		dir, err := Dir()
		if err != nil {
			return err
		}
		path = filepath.Join(dir, name)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("vectors: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("vectors: parse %s: %w", name, err)
	}
	return nil
}

// Report prints the per-file result line and fails the test unless every
// case passed.
func Report(t testing.TB, name string, passed, total int) {
	t.Helper()
	fmt.Printf("vectors: %s %d/%d\n", filepath.Base(name), passed, total)
	if passed != total {
		t.Errorf("%s: %d of %d cases passed", name, passed, total)
	}
}

// Hex is a byte string that decodes from a hex JSON string.
type Hex []byte

// UnmarshalJSON implements json.Unmarshaler.
func (h *Hex) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = d
	return nil
}

// Run loads the named file as a list of cases, checks each with check and
// reports the file's line. A failing case is logged with its index and, if
// describe is not nil, what describe says of it (typically its suite).
func Run[C any](t *testing.T, name string, check func(c *C) error, describe func(c *C) string) {
	t.Helper()
	var cases []C
	Load(t, name, &cases)
	passed := 0
	for i := range cases {
		if err := check(&cases[i]); err != nil {
			if describe != nil {
				t.Errorf("%s case %d (%s): %v", name, i, describe(&cases[i]), err)
			} else {
				t.Errorf("%s case %d: %v", name, i, err)
			}
			continue
		}
		passed++
	}
	Report(t, name, passed, len(cases))
}
