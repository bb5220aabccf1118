package appservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"
)

// Transaction is the part of an appservice transaction body that the
// service acts on.
type Transaction struct {
	Events                 []RoomEvent
	Ephemeral              []EphemeralEvent
	ToDevice               []ToDeviceEvent
	DeviceLists            DeviceLists
	OneTimeKeyCounts       map[id.UserID]map[id.DeviceID]map[string]int
	UnusedFallbackKeyTypes map[id.UserID]map[id.DeviceID][]string
	// Problems lists the elements that were skipped because they were
	// malformed; the rest of the transaction is still valid.
	Problems []error
}

// RoomEvent is a PDU from the transaction's events list.
type RoomEvent struct {
	Type     string
	RoomID   id.RoomID
	EventID  id.EventID
	Sender   id.UserID
	StateKey *string
	// Membership is content.membership of an m.room.member event.
	Membership string
	Raw        json.RawMessage
}

// EphemeralEvent is an EDU (typing, receipts, presence) pushed by MSC2409.
type EphemeralEvent struct {
	Type   string
	RoomID id.RoomID
	Raw    json.RawMessage
}

// ToDeviceEvent is a to-device message for one of our devices (MSC2409/MSC4203).
type ToDeviceEvent struct {
	Type       string
	Sender     id.UserID
	ToUserID   id.UserID
	ToDeviceID id.DeviceID
	Content    json.RawMessage
	Raw        json.RawMessage
}

// DeviceLists names users whose device lists changed, and users with
// whom we no longer share a room (MSC3202).
type DeviceLists struct {
	Changed []id.UserID `json:"changed"`
	Left    []id.UserID `json:"left"`
}

// ErrNotJSON means the body is not JSON at all.
var ErrNotJSON = errors.New("body is not valid JSON")

// ErrBadShape means the body is JSON but not a transaction.
var ErrBadShape = errors.New("body is not an appservice transaction")

type wireTransaction struct {
	Events            json.RawMessage `json:"events"`
	Ephemeral         json.RawMessage `json:"ephemeral"`
	UnstableEphemeral json.RawMessage `json:"de.sorunome.msc2409.ephemeral"`
	ToDevice          json.RawMessage `json:"to_device"`
	UnstableToDevice  json.RawMessage `json:"de.sorunome.msc2409.to_device"`

	DeviceLists         json.RawMessage `json:"device_lists"`
	UnstableDeviceLists json.RawMessage `json:"org.matrix.msc3202.device_lists"`
	OTKCount            json.RawMessage `json:"device_one_time_keys_count"`
	UnstableOTKCount    json.RawMessage `json:"org.matrix.msc3202.device_one_time_keys_count"`
	// Synapse also sends this misspelt variant; older versions sent only it.
	UnstableOTKCounts     json.RawMessage `json:"org.matrix.msc3202.device_one_time_key_counts"`
	FallbackTypes         json.RawMessage `json:"device_unused_fallback_key_types"`
	UnstableFallbackTypes json.RawMessage `json:"org.matrix.msc3202.device_unused_fallback_key_types"`
}

// first returns the first of vals that is present and not null.
func first(vals ...json.RawMessage) json.RawMessage {
	for _, v := range vals {
		if len(v) > 0 && !bytes.Equal(v, []byte("null")) {
			return v
		}
	}
	return nil
}

// ParseTransaction decodes an appservice transaction body. It fails only
// if the body is not JSON (ErrNotJSON) or not an object with an array of
// events (ErrBadShape); malformed elements are skipped and listed in
// Problems.
func ParseTransaction(body []byte) (*Transaction, error) {
	if !json.Valid(body) {
		return nil, ErrNotJSON
	}
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("%w: top level is not an object", ErrBadShape)
	}
	var w wireTransaction
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadShape, err)
	}
	txn := &Transaction{}
	events, err := rawList(w.Events)
	if err != nil {
		return nil, fmt.Errorf("%w: events: %v", ErrBadShape, err)
	}
	for i, raw := range events {
		ev, err := parseRoomEvent(raw)
		if err != nil {
			txn.problem("events[%d]: %v", i, err)
			continue
		}
		txn.Events = append(txn.Events, ev)
	}
	txn.parseEphemeral(first(w.Ephemeral, w.UnstableEphemeral))
	txn.parseToDevice(first(w.ToDevice, w.UnstableToDevice))
	txn.parseDeviceLists(first(w.DeviceLists, w.UnstableDeviceLists))
	txn.parseOTKCounts(first(w.OTKCount, w.UnstableOTKCount, w.UnstableOTKCounts))
	txn.parseFallbackTypes(first(w.FallbackTypes, w.UnstableFallbackTypes))
	return txn, nil
}

func (t *Transaction) problem(format string, args ...any) {
	t.Problems = append(t.Problems, fmt.Errorf(format, args...))
}

func rawList(raw json.RawMessage) ([]json.RawMessage, error) {
	if len(first(raw)) == 0 {
		return nil, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, errors.New("not an array")
	}
	return list, nil
}

func parseRoomEvent(raw json.RawMessage) (RoomEvent, error) {
	var w struct {
		Type     string          `json:"type"`
		RoomID   string          `json:"room_id"`
		EventID  string          `json:"event_id"`
		Sender   string          `json:"sender"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return RoomEvent{}, fmt.Errorf("not an event: %v", err)
	}
	switch {
	case w.Type == "":
		return RoomEvent{}, errors.New("no type")
	case w.RoomID == "":
		return RoomEvent{}, errors.New("no room_id")
	case w.EventID == "":
		return RoomEvent{}, errors.New("no event_id")
	case w.Sender == "":
		return RoomEvent{}, errors.New("no sender")
	}
	ev := RoomEvent{Type: w.Type, RoomID: id.RoomID(w.RoomID), EventID: id.EventID(w.EventID),
		Sender: id.UserID(w.Sender), StateKey: w.StateKey, Raw: raw}
	if w.Type == "m.room.member" {
		if w.StateKey == nil || *w.StateKey == "" {
			return RoomEvent{}, fmt.Errorf("m.room.member %s has no state_key", w.EventID)
		}
		var c struct {
			Membership string `json:"membership"`
		}
		if err := json.Unmarshal(w.Content, &c); err != nil || c.Membership == "" {
			return RoomEvent{}, fmt.Errorf("m.room.member %s has no content.membership", w.EventID)
		}
		ev.Membership = c.Membership
	}
	return ev, nil
}

func (t *Transaction) parseEphemeral(raw json.RawMessage) {
	list, err := rawList(raw)
	if err != nil {
		t.problem("ephemeral: %v", err)
		return
	}
	for i, item := range list {
		var w struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		}
		if err := json.Unmarshal(item, &w); err != nil || w.Type == "" {
			t.problem("ephemeral[%d]: not an event with a type", i)
			continue
		}
		t.Ephemeral = append(t.Ephemeral, EphemeralEvent{Type: w.Type, RoomID: id.RoomID(w.RoomID), Raw: item})
	}
}

func (t *Transaction) parseToDevice(raw json.RawMessage) {
	list, err := rawList(raw)
	if err != nil {
		t.problem("to_device: %v", err)
		return
	}
	for i, item := range list {
		var w struct {
			Type       string          `json:"type"`
			Sender     string          `json:"sender"`
			ToUserID   string          `json:"to_user_id"`
			ToDeviceID string          `json:"to_device_id"`
			Content    json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(item, &w); err != nil {
			t.problem("to_device[%d]: not an event", i)
			continue
		}
		if w.Type == "" || w.Sender == "" || w.ToUserID == "" || w.ToDeviceID == "" {
			t.problem("to_device[%d]: needs type, sender, to_user_id and to_device_id", i)
			continue
		}
		t.ToDevice = append(t.ToDevice, ToDeviceEvent{Type: w.Type, Sender: id.UserID(w.Sender),
			ToUserID: id.UserID(w.ToUserID), ToDeviceID: id.DeviceID(w.ToDeviceID), Content: w.Content, Raw: item})
	}
}

func (t *Transaction) parseDeviceLists(raw json.RawMessage) {
	if raw == nil {
		return
	}
	var w struct {
		Changed []string `json:"changed"`
		Left    []string `json:"left"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		t.problem("device_lists: %v", err)
		return
	}
	for _, u := range w.Changed {
		if u != "" {
			t.DeviceLists.Changed = append(t.DeviceLists.Changed, id.UserID(u))
		}
	}
	for _, u := range w.Left {
		if u != "" {
			t.DeviceLists.Left = append(t.DeviceLists.Left, id.UserID(u))
		}
	}
}

// parseOTKCounts decodes {user: {device: {algorithm: count}}}, keeping
// every algorithm: ours are KeyPackages, which mautrix's OTKCount drops.
func (t *Transaction) parseOTKCounts(raw json.RawMessage) {
	if raw == nil {
		return
	}
	var users map[string]map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &users); err != nil {
		t.problem("device_one_time_keys_count: %v", err)
		return
	}
	for user, devices := range users {
		for device, algs := range devices {
			for alg, v := range algs {
				var n int
				if err := json.Unmarshal(v, &n); err != nil || n < 0 {
					t.problem("device_one_time_keys_count %s/%s/%s: not a count", user, device, alg)
					continue
				}
				if user == "" || device == "" || alg == "" {
					t.problem("device_one_time_keys_count: empty user, device or algorithm")
					continue
				}
				if t.OneTimeKeyCounts == nil {
					t.OneTimeKeyCounts = map[id.UserID]map[id.DeviceID]map[string]int{}
				}
				byDevice := t.OneTimeKeyCounts[id.UserID(user)]
				if byDevice == nil {
					byDevice = map[id.DeviceID]map[string]int{}
					t.OneTimeKeyCounts[id.UserID(user)] = byDevice
				}
				if byDevice[id.DeviceID(device)] == nil {
					byDevice[id.DeviceID(device)] = map[string]int{}
				}
				byDevice[id.DeviceID(device)][alg] = n
			}
		}
	}
}

func (t *Transaction) parseFallbackTypes(raw json.RawMessage) {
	if raw == nil {
		return
	}
	var users map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &users); err != nil {
		t.problem("device_unused_fallback_key_types: %v", err)
		return
	}
	for user, devices := range users {
		for device, v := range devices {
			var types []string
			if err := json.Unmarshal(v, &types); err != nil || user == "" || device == "" {
				t.problem("device_unused_fallback_key_types %s/%s: not a list of strings", user, device)
				continue
			}
			if t.UnusedFallbackKeyTypes == nil {
				t.UnusedFallbackKeyTypes = map[id.UserID]map[id.DeviceID][]string{}
			}
			if t.UnusedFallbackKeyTypes[id.UserID(user)] == nil {
				t.UnusedFallbackKeyTypes[id.UserID(user)] = map[id.DeviceID][]string{}
			}
			t.UnusedFallbackKeyTypes[id.UserID(user)][id.DeviceID(device)] = types
		}
	}
}
