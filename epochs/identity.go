package epochs

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// maxIDLen bounds a dmls_epoch: KDF.Nh of the largest registered suite.
const maxIDLen = 64

// ID is an epoch's dmls_epoch, DeriveSecret(epoch_secret, "epoch"). It
// holds the raw bytes in a string so that it is comparable and can key
// maps; it is an identifier sent in events, not a secret.
type ID string

// DeriveID returns dmls_epoch for an epoch_secret. Derive it when the epoch
// is made: the key schedule does not keep epoch_secret.
func DeriveID(s *suite.Suite, epochSecret []byte) ID {
	return ID(s.DeriveSecret(epochSecret, "epoch"))
}

// Bytes returns a copy of the raw identifier.
func (id ID) Bytes() []byte { return []byte(id) }

// String returns the unpadded base64 form used in Matrix events.
func (id ID) String() string { return base64.RawStdEncoding.EncodeToString([]byte(id)) }

// ParseID decodes the unpadded base64 form of a dmls_epoch.
func ParseID(s string) (ID, error) {
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("%w: dmls_epoch: %v", ErrInvalidEpoch, err)
	}
	id := ID(b)
	if err := id.check(); err != nil {
		return "", err
	}
	return id, nil
}

func (id ID) check() error {
	if len(id) == 0 || len(id) > maxIDLen {
		return fmt.Errorf("%w: dmls_epoch of %d bytes", ErrInvalidEpoch, len(id))
	}
	return nil
}

// Device is one MLS member: a Matrix user's device.
type Device struct {
	UserID   string
	DeviceID string
}

// Identity returns the BasicCredential identity "<user id>|<device id>"
// (DESIGN §6).
func (d Device) Identity() string { return d.UserID + "|" + d.DeviceID }

func (d Device) String() string { return d.Identity() }

// ParseDevice splits a BasicCredential identity. A Matrix user id cannot
// contain '|', so the first one separates the two parts.
func ParseDevice(identity string) (Device, error) {
	user, device, ok := strings.Cut(identity, "|")
	if !ok || user == "" || device == "" {
		return Device{}, fmt.Errorf("epochs: credential identity %q is not <user id>|<device id>", identity)
	}
	return Device{UserID: user, DeviceID: device}, nil
}

// Compare orders devices by user id, then device id: the order of a
// group's member lists, and of the private parts a room stores.
func (d Device) Compare(o Device) int {
	if c := strings.Compare(d.UserID, o.UserID); c != 0 {
		return c
	}
	return strings.Compare(d.DeviceID, o.DeviceID)
}

// Identity names an epoch: our dmls_epoch, and the MSC2883 fields with
// which Matrix events refer to it.
type Identity struct {
	ID ID
	// Number is the MLS epoch number.
	Number uint64
	// Creator is the device whose commit made the epoch (epoch_creator);
	// for the group's first epoch, its creator.
	Creator Device
	// CommitEvent is the event id of that commit (commit_event); for the
	// first epoch, the m.room.create event.
	CommitEvent string
}

// ResolvesPair is MSC2883's name for an epoch in `resolves`:
// [epoch number, [user id, device id]]. It is ambiguous when one device
// made two commits on one epoch, which is why events also carry
// dmls_resolves; see Graph.Resolution.
type ResolvesPair struct {
	Number  uint64
	Creator Device
}

// MarshalJSON writes [number, [user id, device id]].
func (p ResolvesPair) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{p.Number, []string{p.Creator.UserID, p.Creator.DeviceID}})
}

// UnmarshalJSON reads [number, [user id, device id]]. The MSC's example
// quotes the number, so a decimal string is accepted too.
func (p *ResolvesPair) UnmarshalJSON(data []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("resolves entry: %w", err)
	}
	if len(raw) != 2 {
		return errors.New("resolves entry: want [epoch number, [user id, device id]]")
	}
	var n uint64
	if err := json.Unmarshal(raw[0], &n); err != nil {
		var s string
		if json.Unmarshal(raw[0], &s) != nil {
			return fmt.Errorf("resolves entry: epoch number: %w", err)
		}
		if n, err = strconv.ParseUint(s, 10, 64); err != nil {
			return fmt.Errorf("resolves entry: epoch number: %w", err)
		}
	}
	var who []string
	if err := json.Unmarshal(raw[1], &who); err != nil || len(who) != 2 || who[0] == "" || who[1] == "" {
		return errors.New("resolves entry: creator is not [user id, device id]")
	}
	*p = ResolvesPair{Number: n, Creator: Device{UserID: who[0], DeviceID: who[1]}}
	return nil
}

// DeviceSet returns ds as a set.
func DeviceSet(ds []Device) map[Device]bool {
	set := make(map[Device]bool, len(ds))
	for _, d := range ds {
		set[d] = true
	}
	return set
}
