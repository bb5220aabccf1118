package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mls-appservice/mls-appservice/seal"
)

// HasEncryptionKey reports whether a master key is configured, in
// encryption.key (not the placeholder) or encryption.key_file; -g
// generates encryption.key when it is not.
func (c *Config) HasEncryptionKey() bool {
	e := c.Encryption
	return e.KeyFile != "" || (e.Key != "" && !isPlaceholder(e.Key))
}

// SealKeys returns the current master key and the old ones that still
// open values (encryption.old_keys), from encryption.key or the file
// named by encryption.key_file. Errors name the key but never show a
// value.
func (c *Config) SealKeys() (current seal.Key, old []seal.Key, err error) {
	e := c.Encryption
	switch {
	case e.Key != "" && e.KeyFile != "":
		return seal.Key{}, nil, keyErr("encryption.key_file", "set together with encryption.key; keep one")
	case e.KeyFile != "":
		data, err := os.ReadFile(e.KeyFile)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return seal.Key{}, nil, keyErr("encryption.key_file", "cannot read %s: %v", e.KeyFile, err)
		}
		if current, err = seal.ParseKey(string(data)); err != nil {
			return seal.Key{}, nil, keyErr("encryption.key_file", "%s must hold base64 of 32 bytes (%s)", e.KeyFile, strings.TrimPrefix(err.Error(), "seal: "))
		}
	case e.Key == "":
		return seal.Key{}, nil, keyErr("encryption.key", "missing; run mls-appservice -g to generate it")
	case isPlaceholder(e.Key):
		return seal.Key{}, nil, keyErr("encryption.key", "still the placeholder; run mls-appservice -g to generate it")
	default:
		if current, err = seal.ParseKey(e.Key); err != nil {
			return seal.Key{}, nil, keyErr("encryption.key", "must be base64 of 32 bytes (%s); run mls-appservice -g to generate one", strings.TrimPrefix(err.Error(), "seal: "))
		}
	}
	for i, s := range e.OldKeys {
		k, err := seal.ParseKey(s)
		if err != nil {
			return seal.Key{}, nil, keyErr(fmt.Sprintf("encryption.old_keys[%d]", i), "must be base64 of 32 bytes (%s)", strings.TrimPrefix(err.Error(), "seal: "))
		}
		old = append(old, k)
	}
	if _, err := seal.NewSealer(current, old...); err != nil {
		return seal.Key{}, nil, keyErr("encryption.old_keys", "%s", strings.TrimPrefix(err.Error(), "seal: "))
	}
	return current, old, nil
}

// validateKeys checks the keys section.
func (c *Config) validateKeys() error {
	switch c.Keys.Suite {
	case 1, 2, 3:
	default:
		return keyErr("keys.suite", "must be 1, 2 or 3 (the MLS cipher suites with X25519/P-256 and Ed25519/P-256), got %d", c.Keys.Suite)
	}
	if c.Keys.CheckInterval.D() > c.Keys.Lifetime.D()/4 {
		return keyErr("keys.check_interval", "must be at most a quarter of keys.lifetime (%s), or KeyPackages expire between checks", c.Keys.Lifetime.D())
	}
	return nil
}
