package inbound

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// RoomEvent is a PDU from a transaction's events list (or fetched from
// the homeserver), validated.
type RoomEvent struct {
	Type     string
	RoomID   id.RoomID
	EventID  id.EventID
	Sender   id.UserID
	StateKey *string
	// Membership is content.membership of an m.room.member event.
	Membership     string
	OriginServerTS int64
	Content        json.RawMessage
	// Raw is the event as it arrived.
	Raw json.RawMessage
}

// ParseRoomEvent validates one room event.
func ParseRoomEvent(raw json.RawMessage) (RoomEvent, error) {
	var w struct {
		Type           *string         `json:"type"`
		RoomID         *string         `json:"room_id"`
		EventID        *string         `json:"event_id"`
		Sender         *string         `json:"sender"`
		StateKey       *string         `json:"state_key"`
		OriginServerTS *json.Number    `json:"origin_server_ts"`
		Content        json.RawMessage `json:"content"`
	}
	if err := decodeObject(raw, &w); err != nil {
		return RoomEvent{}, fmt.Errorf("not an event: %w", err)
	}
	ev := RoomEvent{Raw: raw, Content: w.Content, StateKey: w.StateKey}
	var err error
	if ev.Type, err = requiredText("type", w.Type, MaxTypeBytes); err != nil {
		return RoomEvent{}, err
	}
	var room, event, sender string
	if room, err = requiredID("room_id", w.RoomID, '!'); err != nil {
		return RoomEvent{}, err
	}
	if event, err = requiredID("event_id", w.EventID, '$'); err != nil {
		return RoomEvent{}, err
	}
	if sender, err = requiredID("sender", w.Sender, '@'); err != nil {
		return RoomEvent{}, err
	}
	ev.RoomID, ev.EventID, ev.Sender = id.RoomID(room), id.EventID(event), id.UserID(sender)
	if w.StateKey != nil {
		if err := CheckText("state_key", *w.StateKey, MaxIDBytes); err != nil {
			return RoomEvent{}, err
		}
	}
	if w.OriginServerTS != nil {
		ts, err := w.OriginServerTS.Int64()
		if err != nil || ts < 0 {
			return RoomEvent{}, fmt.Errorf("%w: origin_server_ts %s", ErrInvalid, truncate(w.OriginServerTS.String()))
		}
		ev.OriginServerTS = ts
	}
	if len(w.Content) > 0 && !bytes.Equal(w.Content, []byte("null")) && firstByte(w.Content) != '{' {
		return RoomEvent{}, fmt.Errorf("%w: content of %s is not an object", ErrInvalid, event)
	}
	if ev.Type == "m.room.member" {
		if w.StateKey == nil {
			return RoomEvent{}, fmt.Errorf("%w: m.room.member %s has no state_key", ErrInvalid, event)
		}
		if err := CheckID("state_key", *w.StateKey, '@'); err != nil {
			return RoomEvent{}, fmt.Errorf("m.room.member %s: %w", event, err)
		}
		var c struct {
			Membership *string `json:"membership"`
		}
		if err := json.Unmarshal(w.Content, &c); err != nil {
			return RoomEvent{}, fmt.Errorf("%w: m.room.member %s content: %v", ErrInvalid, event, err)
		}
		if ev.Membership, err = requiredText("content.membership", c.Membership, MaxTextBytes); err != nil {
			return RoomEvent{}, fmt.Errorf("m.room.member %s: %w", event, err)
		}
	}
	return ev, nil
}

// EphemeralEvent is an EDU (typing, receipts, presence) pushed by MSC2409.
type EphemeralEvent struct {
	Type   string
	RoomID id.RoomID // empty for presence
	Raw    json.RawMessage
}

// ParseEphemeralEvent validates one ephemeral event.
func ParseEphemeralEvent(raw json.RawMessage) (EphemeralEvent, error) {
	var w struct {
		Type   *string `json:"type"`
		RoomID *string `json:"room_id"`
	}
	if err := decodeObject(raw, &w); err != nil {
		return EphemeralEvent{}, fmt.Errorf("not an event: %w", err)
	}
	t, err := requiredText("type", w.Type, MaxTypeBytes)
	if err != nil {
		return EphemeralEvent{}, err
	}
	ev := EphemeralEvent{Type: t, Raw: raw}
	if w.RoomID != nil {
		if err := CheckID("room_id", *w.RoomID, '!'); err != nil {
			return EphemeralEvent{}, err
		}
		ev.RoomID = id.RoomID(*w.RoomID)
	}
	return ev, nil
}

// ToDeviceEvent is a to-device message for one of our devices (MSC2409).
type ToDeviceEvent struct {
	Type       string
	Sender     id.UserID
	ToUserID   id.UserID
	ToDeviceID id.DeviceID
	Content    json.RawMessage
	Raw        json.RawMessage
}

// ParseToDeviceEvent validates one to-device event.
func ParseToDeviceEvent(raw json.RawMessage) (ToDeviceEvent, error) {
	var w struct {
		Type       *string         `json:"type"`
		Sender     *string         `json:"sender"`
		ToUserID   *string         `json:"to_user_id"`
		ToDeviceID *string         `json:"to_device_id"`
		Content    json.RawMessage `json:"content"`
	}
	if err := decodeObject(raw, &w); err != nil {
		return ToDeviceEvent{}, fmt.Errorf("not an event: %w", err)
	}
	ev := ToDeviceEvent{Content: w.Content, Raw: raw}
	var err error
	if ev.Type, err = requiredText("type", w.Type, MaxTypeBytes); err != nil {
		return ToDeviceEvent{}, err
	}
	var sender, to string
	if sender, err = requiredID("sender", w.Sender, '@'); err != nil {
		return ToDeviceEvent{}, err
	}
	if to, err = requiredID("to_user_id", w.ToUserID, '@'); err != nil {
		return ToDeviceEvent{}, err
	}
	if w.ToDeviceID == nil {
		return ToDeviceEvent{}, fmt.Errorf("%w: no to_device_id", ErrInvalid)
	}
	if err := CheckDeviceID("to_device_id", *w.ToDeviceID); err != nil {
		return ToDeviceEvent{}, err
	}
	if len(w.Content) > 0 && !bytes.Equal(w.Content, []byte("null")) && firstByte(w.Content) != '{' {
		return ToDeviceEvent{}, fmt.Errorf("%w: content is not an object", ErrInvalid)
	}
	ev.Sender, ev.ToUserID, ev.ToDeviceID = id.UserID(sender), id.UserID(to), id.DeviceID(*w.ToDeviceID)
	return ev, nil
}

var errNotObject = errors.New("not a JSON object")

var errNotUTF8 = errors.New("not valid UTF-8")

// decodeObject unmarshals raw, which must be a JSON object in valid UTF-8,
// into v. json.Unmarshal would accept null for a struct and leave it
// empty, and would quietly replace invalid UTF-8 with U+FFFD, so that an
// identifier would no longer be the one the homeserver sent.
func decodeObject(raw json.RawMessage, v any) error {
	if firstByte(raw) != '{' {
		return errNotObject
	}
	if !utf8.Valid(raw) {
		return errNotUTF8
	}
	return json.Unmarshal(raw, v)
}

func firstByte(raw []byte) byte {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

func requiredText(field string, s *string, limit int) (string, error) {
	if s == nil || *s == "" {
		return "", fmt.Errorf("%w: no %s", ErrInvalid, field)
	}
	if err := CheckText(field, *s, limit); err != nil {
		return "", err
	}
	return *s, nil
}

func requiredID(field string, s *string, sigil byte) (string, error) {
	if s == nil {
		return "", fmt.Errorf("%w: no %s", ErrInvalid, field)
	}
	if err := CheckID(field, *s, sigil); err != nil {
		return "", err
	}
	return *s, nil
}
