package inbound

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"maunium.net/go/mautrix/id"
)

// DeviceListChange says that a user's device list changed, or that we no
// longer share a room with the user (MSC3202 device_lists).
type DeviceListChange struct {
	UserID id.UserID `json:"user_id"`
	Left   bool      `json:"left,omitempty"`
}

// KeyCounts is what the homeserver says about one of our devices' keys
// (MSC3202): its one-time key counts by algorithm, and which fallback key
// algorithms it still holds unused. Either part may be absent.
type KeyCounts struct {
	UserID   id.UserID   `json:"user_id"`
	DeviceID id.DeviceID `json:"device_id"`
	// OneTimeKeys is nil when the transaction had no counts for the device.
	OneTimeKeys map[string]int `json:"one_time_keys,omitempty"`
	// UnusedFallback is meaningful only when HasFallback is set.
	UnusedFallback []string `json:"unused_fallback,omitempty"`
	HasFallback    bool     `json:"has_fallback,omitempty"`
}

// Validate checks every field of k, as ParseKeyCounts does, for values
// built by the transaction parser.
func (k KeyCounts) Validate() error {
	if err := CheckID("user_id", string(k.UserID), '@'); err != nil {
		return err
	}
	if err := CheckDeviceID("device_id", string(k.DeviceID)); err != nil {
		return err
	}
	for alg, n := range k.OneTimeKeys {
		if alg == "" {
			return fmt.Errorf("%w: empty algorithm", ErrInvalid)
		}
		if err := CheckText("algorithm", alg, MaxTextBytes); err != nil {
			return err
		}
		if err := CheckCount("count of "+truncate(alg), int64(n)); err != nil {
			return err
		}
	}
	for _, alg := range k.UnusedFallback {
		if err := CheckText("fallback algorithm", alg, MaxTextBytes); err != nil {
			return err
		}
	}
	return nil
}

// ParseKeyCounts decodes a KeyCounts work-item payload and validates it.
func ParseKeyCounts(raw []byte) (KeyCounts, error) {
	var k KeyCounts
	if err := decodeObject(raw, &k); err != nil {
		return KeyCounts{}, fmt.Errorf("key counts: %w", err)
	}
	return k, k.Validate()
}

// ParseDeviceListChange decodes a DeviceListChange work-item payload and
// validates it.
func ParseDeviceListChange(raw []byte) (DeviceListChange, error) {
	var c DeviceListChange
	if err := decodeObject(raw, &c); err != nil {
		return DeviceListChange{}, fmt.Errorf("device list change: %w", err)
	}
	return c, CheckID("user_id", string(c.UserID), '@')
}

// Encode returns the work-item payload of k.
func (k KeyCounts) Encode() []byte { return mustJSON(k) }

// Equal reports whether k and o have the same payload (Encode), without
// encoding either: a nil map or list encodes as an empty one does.
func (k KeyCounts) Equal(o KeyCounts) bool {
	return k.UserID == o.UserID && k.DeviceID == o.DeviceID && maps.Equal(k.OneTimeKeys, o.OneTimeKeys) &&
		slices.Equal(k.UnusedFallback, o.UnusedFallback) && k.HasFallback == o.HasFallback
}

// Encode returns the work-item payload of c.
func (c DeviceListChange) Encode() []byte { return mustJSON(c) }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps of strings and ints and plain strings: cannot fail.
		panic(fmt.Sprintf("inbound: encode %T: %v", v, err))
	}
	return b
}
