package groups

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/matrix/attachment"
)

// The Matrix wire format of DMLS (MSC2883 with our dmls_ extensions,
// DESIGN 6). Everything here is parsed from events that any room member,
// or any device that can send us a to-device message, controls: parsers
// check every field and return an error naming it.

// EncryptedType is the event type of commits, messages and Welcomes.
const EncryptedType = "m.room.encrypted"

// ErrWire wraps every error of the wire parsers.
var ErrWire = errors.New("malformed DMLS content")

// maxCiphertext bounds the base64 ciphertext of one event (Matrix events
// are at most 64 KiB; to-device messages are bounded likewise).
const maxCiphertext = 96 << 10

// deviceJSON is MSC2883's [user id, device id].
type deviceJSON epochs.Device

func (d deviceJSON) MarshalJSON() ([]byte, error) {
	return json.Marshal([]string{d.UserID, d.DeviceID})
}

func (d *deviceJSON) UnmarshalJSON(data []byte) error {
	var pair []string
	if err := json.Unmarshal(data, &pair); err != nil || len(pair) != 2 {
		return errors.New("want [user id, device id]")
	}
	if err := inbound.CheckID("user id", pair[0], '@'); err != nil {
		return err
	}
	if err := inbound.CheckDeviceID("device id", pair[1]); err != nil {
		return err
	}
	*d = deviceJSON{UserID: pair[0], DeviceID: pair[1]}
	return nil
}

// b64ID is a dmls_epoch in unpadded base64.
type b64ID epochs.ID

func (id b64ID) MarshalJSON() ([]byte, error) { return json.Marshal(epochs.ID(id).String()) }

func (id *b64ID) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("want a base64 string")
	}
	parsed, err := epochs.ParseID(s)
	if err != nil {
		return err
	}
	*id = b64ID(parsed)
	return nil
}

// wireEncrypted is the content of m.room.encrypted room events, for commits
// and application messages alike.
type wireEncrypted struct {
	Algorithm      string                `json:"algorithm"`
	Ciphertext     string                `json:"ciphertext,omitempty"`
	CiphertextFile json.RawMessage       `json:"ciphertext_file,omitempty"`
	EpochCreator   *deviceJSON           `json:"epoch_creator"`
	CommitEvent    string                `json:"commit_event"`
	Epoch          *b64ID                `json:"dmls_epoch"`
	Sender         *deviceJSON           `json:"sender,omitempty"`
	Resolves       []epochs.ResolvesPair `json:"resolves,omitempty"`
	DMLSResolves   []b64ID               `json:"dmls_resolves,omitempty"`
	Next           *b64ID                `json:"dmls_next_epoch,omitempty"`
	NextNumber     *uint64               `json:"dmls_next_epoch_number,omitempty"`
}

// Encrypted is a parsed m.room.encrypted room event of a DMLS room.
type Encrypted struct {
	Algorithm string
	// Ciphertext is the MLSMessage; nil while it is in the media
	// repository (File), until fetchCommit downloads it.
	Ciphertext []byte
	File       *attachment.File
	// EpochCreator and CommitEvent name the epoch the event belongs to:
	// for a message the epoch it is encrypted in, for a commit its base.
	EpochCreator epochs.Device
	CommitEvent  string
	Epoch        epochs.ID
	// Commit is set for a commit: what it claims to create and resolve.
	Commit *CommitFields
}

// CommitFields are the fields a commit event adds to a message's.
type CommitFields struct {
	Sender     epochs.Device
	Resolves   []epochs.ResolvesPair
	DMLSResolv []epochs.ID
	Next       epochs.ID
	NextNumber uint64
}

// ParseEncrypted parses the content of an m.room.encrypted room event. It
// does not decide whether the ciphertext is a commit: a content with
// dmls_next_epoch claims to be one, and the MLS layer checks the claim.
func ParseEncrypted(content json.RawMessage) (*Encrypted, error) {
	var w wireEncrypted
	if err := decodeStrict(content, &w); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(w.Algorithm, algorithmPrefix) {
		return nil, fmt.Errorf("%w: algorithm %q is not DMLS", ErrWire, truncate(w.Algorithm))
	}
	ct, file, err := decodePayload(w.Ciphertext, w.CiphertextFile)
	if err != nil {
		return nil, err
	}
	if w.EpochCreator == nil || w.Epoch == nil {
		return nil, fmt.Errorf("%w: epoch_creator and dmls_epoch are required", ErrWire)
	}
	if err := inbound.CheckID("commit_event", w.CommitEvent, '$'); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWire, err)
	}
	e := &Encrypted{Algorithm: w.Algorithm, Ciphertext: ct, File: file, EpochCreator: epochs.Device(*w.EpochCreator),
		CommitEvent: w.CommitEvent, Epoch: epochs.ID(*w.Epoch)}
	if w.Next == nil {
		if w.Sender != nil || len(w.Resolves) > 0 || len(w.DMLSResolves) > 0 || w.NextNumber != nil {
			return nil, fmt.Errorf("%w: commit fields without dmls_next_epoch", ErrWire)
		}
		if file != nil {
			return nil, fmt.Errorf("%w: ciphertext_file carries commits only, not application messages", ErrWire)
		}
		return e, nil
	}
	if w.Sender == nil || w.NextNumber == nil {
		return nil, fmt.Errorf("%w: a commit needs sender and dmls_next_epoch_number", ErrWire)
	}
	if len(w.Resolves) != len(w.DMLSResolves) {
		return nil, fmt.Errorf("%w: resolves has %d entries, dmls_resolves %d", ErrWire, len(w.Resolves), len(w.DMLSResolves))
	}
	c := &CommitFields{Sender: epochs.Device(*w.Sender), Resolves: w.Resolves, Next: epochs.ID(*w.Next), NextNumber: *w.NextNumber}
	for _, id := range w.DMLSResolves {
		c.DMLSResolv = append(c.DMLSResolv, epochs.ID(id))
	}
	e.Commit = c
	return e, nil
}

// wireWelcome is the content of a Welcome to-device message.
type wireWelcome struct {
	Algorithm      string                `json:"algorithm"`
	Ciphertext     string                `json:"ciphertext,omitempty"`
	CiphertextFile json.RawMessage       `json:"ciphertext_file,omitempty"`
	RoomID         string                `json:"room_id"`
	Sender         *deviceJSON           `json:"sender"`
	Resolves       []epochs.ResolvesPair `json:"resolves"`
	CommitEvent    string                `json:"commit_event"`
	Base           *b64ID                `json:"dmls_base_epoch"`
	Epoch          *b64ID                `json:"dmls_epoch"`
	Number         *uint64               `json:"dmls_epoch_number"`
	DMLSResolves   []b64ID               `json:"dmls_resolves"`
}

// Welcome is a parsed Welcome to-device message: the MLS Welcome and where
// the epoch it enters sits in the room's graph.
type Welcome struct {
	Algorithm string
	// Message is the MLS Welcome; nil while it is in the media
	// repository (File), until fetchWelcome downloads it.
	Message []byte
	File    *attachment.File
	RoomID  string
	// Commit describes the commit that made the epoch, as the committer
	// says (the joiner checks what it can: the epoch id).
	Commit epochs.Commit
}

// ParseWelcome parses the content of a Welcome to-device message.
func ParseWelcome(content json.RawMessage) (*Welcome, error) {
	var w wireWelcome
	if err := decodeStrict(content, &w); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(w.Algorithm, welcomePrefix) {
		return nil, fmt.Errorf("%w: algorithm %q is not a DMLS Welcome", ErrWire, truncate(w.Algorithm))
	}
	ct, file, err := decodePayload(w.Ciphertext, w.CiphertextFile)
	if err != nil {
		return nil, err
	}
	if err := inbound.CheckID("room_id", w.RoomID, '!'); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWire, err)
	}
	if err := inbound.CheckID("commit_event", w.CommitEvent, '$'); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWire, err)
	}
	if w.Sender == nil || w.Base == nil || w.Epoch == nil || w.Number == nil {
		return nil, fmt.Errorf("%w: sender, dmls_base_epoch, dmls_epoch and dmls_epoch_number are required", ErrWire)
	}
	if *w.Number == 0 {
		return nil, fmt.Errorf("%w: a Welcome's epoch cannot be the first", ErrWire)
	}
	c := epochs.Commit{Base: epochs.ID(*w.Base), Epoch: epochs.ID(*w.Epoch), Number: *w.Number,
		Creator: epochs.Device(*w.Sender), EventID: w.CommitEvent}
	for _, id := range w.DMLSResolves {
		c.Resolves = append(c.Resolves, epochs.ID(id))
	}
	return &Welcome{Algorithm: w.Algorithm, Message: ct, File: file, RoomID: w.RoomID, Commit: c}, nil
}

// Plaintext is what a DMLS application message encrypts (MSC2883): the
// event's type and content, and the room, so that a ciphertext replayed
// into another room is recognised.
type Plaintext struct {
	Type    string          `json:"type"`
	Content json.RawMessage `json:"content"`
	RoomID  string          `json:"room_id"`
}

// ParsePlaintext parses a decrypted application message.
func ParsePlaintext(data []byte) (*Plaintext, error) {
	var p Plaintext
	if err := decodeStrict(data, &p); err != nil {
		return nil, err
	}
	if err := inbound.CheckText("type", p.Type, inbound.MaxTypeBytes); err != nil || p.Type == "" {
		return nil, fmt.Errorf("%w: plaintext type: %v", ErrWire, err)
	}
	if err := inbound.CheckID("room_id", p.RoomID, '!'); err != nil {
		return nil, fmt.Errorf("%w: plaintext %w", ErrWire, err)
	}
	if !isObject(p.Content) {
		return nil, fmt.Errorf("%w: plaintext content is not an object", ErrWire)
	}
	return &p, nil
}

// algorithmPrefix is MSC2883's algorithm prefix with the dot.
const (
	algorithmPrefix = "org.matrix.msc2883.v1.dmls."
	welcomePrefix   = "org.matrix.msc2883.v1.dmls.welcome."
)

// decodeStrict unmarshals a JSON object in valid UTF-8 into v.
func decodeStrict(data []byte, v any) error {
	if !isObject(data) {
		return fmt.Errorf("%w: not a JSON object", ErrWire)
	}
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: not valid UTF-8", ErrWire)
	}
	if err := json.Unmarshal(data, v); err != nil {
		if name, ferr := failingField(data, v); name != "" {
			return fmt.Errorf("%w: %s: %v", ErrWire, name, ferr)
		}
		return fmt.Errorf("%w: %v", ErrWire, err)
	}
	return nil
}

// failingField finds the field of the struct v points to whose value in
// the JSON object data does not decode, and its error: encoding/json
// names the field only for its own type errors, not for those of a
// field's UnmarshalJSON, and an error that does not name the field is of
// little use to whoever sent it.
func failingField(data []byte, v any) (string, error) {
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return "", nil
	}
	t := reflect.TypeOf(v).Elem()
	if t.Kind() != reflect.Struct {
		return "", nil
	}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		value, ok := raw[name]
		if name == "" || name == "-" || !ok {
			continue
		}
		if err := json.Unmarshal(value, reflect.New(t.Field(i).Type).Interface()); err != nil {
			return name, err
		}
	}
	return "", nil
}

func isObject(data []byte) bool {
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && data[0] == '{'
}

func decodeCiphertext(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: no ciphertext", ErrWire)
	}
	if len(s) > maxCiphertext {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrWire, len(s))
	}
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext is not base64", ErrWire)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: ciphertext is empty", ErrWire)
	}
	return b, nil
}

func truncate(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", `\0`), "\uFFFD")
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// b64 encodes binary values of the wire format.
func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
