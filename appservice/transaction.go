package appservice

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/inbound"
)

// Transaction is the part of an appservice transaction body that the
// service acts on, every element validated (package inbound).
type Transaction struct {
	Events      []inbound.RoomEvent
	Ephemeral   []inbound.EphemeralEvent
	ToDevice    []inbound.ToDeviceEvent
	DeviceLists []inbound.DeviceListChange
	// KeyCounts holds one entry per device that had one-time key counts
	// or unused fallback key types, sorted by user and device.
	KeyCounts []inbound.KeyCounts
	// Problems lists the elements that were skipped because they were
	// malformed; the rest of the transaction is still valid.
	Problems []error
}

// ErrNotJSON means the body is not JSON at all.
var ErrNotJSON = errors.New("body is not valid JSON")

// ErrBadShape means the body is JSON but not a transaction.
var ErrBadShape = errors.New("body is not an appservice transaction")

// wireTransaction holds the members of a transaction body that the
// service reads, each as it stands in the body. Keys match exactly, as
// the specification names them (json.Unmarshal into a struct also took
// "EVENTS" for "events"); a repeated key's last value counts.
type wireTransaction struct {
	Events            json.RawMessage
	Ephemeral         json.RawMessage
	UnstableEphemeral json.RawMessage
	ToDevice          json.RawMessage
	UnstableToDevice  json.RawMessage

	DeviceLists         json.RawMessage
	UnstableDeviceLists json.RawMessage
	OTKCount            json.RawMessage
	UnstableOTKCount    json.RawMessage
	// Synapse also sends this misspelt variant; older versions sent only it.
	UnstableOTKCounts     json.RawMessage
	FallbackTypes         json.RawMessage
	UnstableFallbackTypes json.RawMessage
}

// field returns where the member named key goes; nil for a member the
// service does not read.
func (w *wireTransaction) field(key string) *json.RawMessage {
	switch key {
	case "events":
		return &w.Events
	case "ephemeral":
		return &w.Ephemeral
	case "de.sorunome.msc2409.ephemeral":
		return &w.UnstableEphemeral
	case "to_device":
		return &w.ToDevice
	case "de.sorunome.msc2409.to_device":
		return &w.UnstableToDevice
	case "device_lists":
		return &w.DeviceLists
	case "org.matrix.msc3202.device_lists":
		return &w.UnstableDeviceLists
	case "device_one_time_keys_count":
		return &w.OTKCount
	case "org.matrix.msc3202.device_one_time_keys_count":
		return &w.UnstableOTKCount
	case "org.matrix.msc3202.device_one_time_key_counts":
		return &w.UnstableOTKCounts
	case "device_unused_fallback_key_types":
		return &w.FallbackTypes
	case "org.matrix.msc3202.device_unused_fallback_key_types":
		return &w.UnstableFallbackTypes
	}
	return nil
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
// Problems, so one bad event never costs the others.
func ParseTransaction(body []byte) (*Transaction, error) {
	// The whole body is checked once, as it is split (object.go).
	members, err := splitObject(body)
	switch {
	case errors.Is(err, errNotObject):
		return nil, fmt.Errorf("%w: %v", ErrBadShape, err)
	case err != nil:
		return nil, ErrNotJSON
	}
	var w wireTransaction
	for _, m := range members {
		if f := w.field(m.key); f != nil {
			*f = m.value
		}
	}
	// Events not an array makes the whole body unusable.
	var events []json.RawMessage
	if len(w.Events) > 0 {
		if err := json.Unmarshal(w.Events, &events); err != nil {
			return nil, fmt.Errorf("%w: events: %v", ErrBadShape, err)
		}
	}
	txn := &Transaction{}
	for i, raw := range events {
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil {
			txn.problem("events[%d]: %v", i, err)
			continue
		}
		txn.Events = append(txn.Events, ev)
	}
	txn.parseList("ephemeral", first(w.Ephemeral, w.UnstableEphemeral), func(raw json.RawMessage) error {
		ev, err := inbound.ParseEphemeralEvent(raw)
		if err == nil {
			txn.Ephemeral = append(txn.Ephemeral, ev)
		}
		return err
	})
	txn.parseList("to_device", first(w.ToDevice, w.UnstableToDevice), func(raw json.RawMessage) error {
		ev, err := inbound.ParseToDeviceEvent(raw)
		if err == nil {
			txn.ToDevice = append(txn.ToDevice, ev)
		}
		return err
	})
	txn.parseDeviceLists(first(w.DeviceLists, w.UnstableDeviceLists))
	counts := map[deviceKey]*inbound.KeyCounts{}
	txn.parseOTKCounts(first(w.OTKCount, w.UnstableOTKCount, w.UnstableOTKCounts), counts)
	txn.parseFallbackTypes(first(w.FallbackTypes, w.UnstableFallbackTypes), counts)
	for _, k := range counts {
		txn.KeyCounts = append(txn.KeyCounts, *k)
	}
	// Map order is random; sorted, replays produce items in one order.
	slices.SortFunc(txn.KeyCounts, func(a, b inbound.KeyCounts) int {
		if c := compareStrings(string(a.UserID), string(b.UserID)); c != 0 {
			return c
		}
		return compareStrings(string(a.DeviceID), string(b.DeviceID))
	})
	return txn, nil
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type deviceKey struct {
	user   id.UserID
	device id.DeviceID
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

func (t *Transaction) parseList(name string, raw json.RawMessage, parse func(json.RawMessage) error) {
	list, err := rawList(raw)
	if err != nil {
		t.problem("%s: %v", name, err)
		return
	}
	for i, item := range list {
		if err := parse(item); err != nil {
			t.problem("%s[%d]: %v", name, i, err)
		}
	}
}

func (t *Transaction) parseDeviceLists(raw json.RawMessage) {
	if !t.validUTF8("device_lists", raw) {
		return
	}
	var w struct {
		Changed []json.RawMessage `json:"changed"`
		Left    []json.RawMessage `json:"left"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		t.problem("device_lists: %v", err)
		return
	}
	for _, part := range []struct {
		name string
		list []json.RawMessage
		left bool
	}{{"changed", w.Changed, false}, {"left", w.Left, true}} {
		for i, raw := range part.list {
			var u string
			if err := json.Unmarshal(raw, &u); err != nil {
				t.problem("device_lists.%s[%d]: not a string", part.name, i)
				continue
			}
			if err := inbound.CheckID("user id", u, '@'); err != nil {
				t.problem("device_lists.%s[%d]: %v", part.name, i, err)
				continue
			}
			t.DeviceLists = append(t.DeviceLists, inbound.DeviceListChange{UserID: id.UserID(u), Left: part.left})
		}
	}
}

// validUTF8 reports whether a section is present and valid UTF-8; the
// decoder would quietly replace invalid bytes in the user and device ids
// that are its map keys.
func (t *Transaction) validUTF8(name string, raw json.RawMessage) bool {
	if raw == nil {
		return false
	}
	if !utf8.Valid(raw) {
		t.problem("%s: not valid UTF-8", name)
		return false
	}
	return true
}

// checkDevice validates a user and device named as map keys.
func checkDevice(user, device string) error {
	if err := inbound.CheckID("user id", user, '@'); err != nil {
		return err
	}
	return inbound.CheckDeviceID("device id", device)
}

func entry(counts map[deviceKey]*inbound.KeyCounts, user, device string) *inbound.KeyCounts {
	k := deviceKey{id.UserID(user), id.DeviceID(device)}
	e := counts[k]
	if e == nil {
		e = &inbound.KeyCounts{UserID: k.user, DeviceID: k.device}
		counts[k] = e
	}
	return e
}

// parseOTKCounts decodes {user: {device: {algorithm: count}}}, keeping
// every algorithm: ours are KeyPackages, which mautrix's OTKCount drops.
//
// Well-formed counts are scanned by hand (decodeOTKCounts, keycounts.go
// says why). A value of the wrong type anywhere sends the section through
// a tolerant decoding that keeps every other device's counts.
func (t *Transaction) parseOTKCounts(raw json.RawMessage, counts map[deviceKey]*inbound.KeyCounts) {
	if !t.validUTF8("device_one_time_keys_count", raw) {
		return
	}
	if typed, ok := decodeOTKCounts(raw); ok {
		for user, devices := range typed {
			for device, algs := range devices {
				if t.checkDevice("device_one_time_keys_count", user, device) {
					for alg, n := range algs {
						t.addOTKCount(counts, user, device, alg, n, nil)
					}
				}
			}
		}
		return
	}
	var users map[string]map[string]map[string]json.RawMessage
	if err := json.Unmarshal(raw, &users); err != nil {
		t.problem("device_one_time_keys_count: %v", err)
		return
	}
	for user, devices := range users {
		for device, algs := range devices {
			if t.checkDevice("device_one_time_keys_count", user, device) {
				for alg, v := range algs {
					var n int64
					err := json.Unmarshal(v, &n)
					t.addOTKCount(counts, user, device, alg, n, err)
				}
			}
		}
	}
}

// checkDevice checks a user and device named as map keys of section, and
// records the problem if they do not pass.
func (t *Transaction) checkDevice(section, user, device string) bool {
	if err := checkDevice(user, device); err != nil {
		t.problem("%s: %v", section, err)
		return false
	}
	return true
}

// addOTKCount records a device's count of alg, decoded with err, if it
// passes the checks.
func (t *Transaction) addOTKCount(counts map[deviceKey]*inbound.KeyCounts, user, device, alg string, n int64, err error) {
	if err == nil {
		err = inbound.CheckCount("count", n)
	}
	if err == nil && alg == "" {
		err = errors.New("empty algorithm")
	}
	if err == nil {
		err = inbound.CheckText("algorithm", alg, inbound.MaxTextBytes)
	}
	if err != nil {
		t.problem("device_one_time_keys_count %s/%s: %v", user, device, err)
		return
	}
	e := entry(counts, user, device)
	if e.OneTimeKeys == nil {
		e.OneTimeKeys = map[string]int{}
	}
	e.OneTimeKeys[alg] = int(n)
}

// parseFallbackTypes decodes {user: {device: [algorithm]}}, scanned by
// hand when well-formed (as parseOTKCounts).
func (t *Transaction) parseFallbackTypes(raw json.RawMessage, counts map[deviceKey]*inbound.KeyCounts) {
	if !t.validUTF8("device_unused_fallback_key_types", raw) {
		return
	}
	if typed, ok := decodeFallbackTypes(raw); ok {
		for user, devices := range typed {
			for device, types := range devices {
				t.addFallbackTypes(counts, user, device, types, nil)
			}
		}
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
			err := json.Unmarshal(v, &types)
			t.addFallbackTypes(counts, user, device, types, err)
		}
	}
}

// addFallbackTypes records a device's unused fallback key types, decoded
// with err, if they pass the checks.
func (t *Transaction) addFallbackTypes(counts map[deviceKey]*inbound.KeyCounts, user, device string, types []string, err error) {
	if err == nil {
		err = checkDevice(user, device)
	}
	for _, alg := range types {
		if err == nil {
			err = inbound.CheckText("algorithm", alg, inbound.MaxTextBytes)
		}
	}
	if err != nil {
		t.problem("device_unused_fallback_key_types %s/%s: %v", user, device, err)
		return
	}
	e := entry(counts, user, device)
	e.UnusedFallback = append([]string{}, types...)
	e.HasFallback = true
}
