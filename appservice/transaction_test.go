package appservice

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mls-appservice/mls-appservice/inbound"
)

func TestParseTransaction(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr error
		check   func(t *testing.T, txn *Transaction)
	}{
		{name: "not JSON", body: `{"events": [`, wantErr: ErrNotJSON},
		{name: "empty body", body: ``, wantErr: ErrNotJSON},
		{name: "array", body: `[]`, wantErr: ErrBadShape},
		{name: "null", body: `null`, wantErr: ErrBadShape},
		{name: "events not a list", body: `{"events": {}}`, wantErr: ErrBadShape},
		{name: "keys match exactly; a repeated key's last value counts", body: `{"EVENTS": 7, "events": 7,
			"events": [{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$1", "sender": "@a:hs", "content": {}}],
			"Device_One_Time_Keys_Count": {"@a:hs": {"D": {"k": 1}}}}`,
			check: func(t *testing.T, txn *Transaction) {
				if len(txn.Events) != 1 || len(txn.KeyCounts) != 0 || len(txn.Problems) != 0 {
					t.Errorf("got %+v", txn)
				}
			}},
		{name: "no events", body: `{}`, check: func(t *testing.T, txn *Transaction) {
			if len(txn.Events) != 0 || len(txn.Problems) != 0 {
				t.Errorf("got %+v", txn)
			}
		}},
		{name: "member and message", body: `{"events": [
			{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$1", "sender": "@a:hs", "state_key": "@a:hs", "content": {"membership": "join"}, "origin_server_ts": 17},
			{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$2", "sender": "@a:hs", "content": {"body": "hi"}}]}`,
			check: func(t *testing.T, txn *Transaction) {
				if len(txn.Events) != 2 || txn.Events[0].Membership != "join" || txn.Events[1].EventID != "$2" ||
					txn.Events[0].OriginServerTS != 17 {
					t.Errorf("got %+v", txn.Events)
				}
			}},
		{name: "malformed elements are skipped", body: `{"events": [
			{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$1", "sender": "@a:hs", "content": {"membership": "join"}},
			{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$2", "sender": "@a:hs", "state_key": "@a:hs", "content": {}},
			{"room_id": "!r:hs", "event_id": "$3", "sender": "@a:hs"},
			42,
			{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$4", "sender": "@a:hs"}],
			"de.sorunome.msc2409.to_device": [{"type": "x"}, "nope"],
			"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"signed_curve25519": -1, "x": "y", "ok": 3}}}}`,
			check: func(t *testing.T, txn *Transaction) {
				if len(txn.Events) != 1 || txn.Events[0].EventID != "$4" {
					t.Errorf("events %+v", txn.Events)
				}
				if len(txn.Problems) != 8 {
					t.Errorf("%d problems, want 8: %v", len(txn.Problems), txn.Problems)
				}
				if len(txn.KeyCounts) != 1 || txn.KeyCounts[0].OneTimeKeys["ok"] != 3 || len(txn.KeyCounts[0].OneTimeKeys) != 1 {
					t.Errorf("counts %+v", txn.KeyCounts)
				}
			}},
		{name: "well-typed counts that fail their checks are skipped", body: `{"events": [],
			"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"k": -1, "ok": 3, "": 1}, "": {"k": 1}},
				"nobody": {"D": {"k": 1}}},
			"org.matrix.msc3202.device_unused_fallback_key_types": {"@a:hs": {"D": ["k"], "": ["k"]}}}`,
			check: func(t *testing.T, txn *Transaction) {
				if len(txn.Problems) != 5 {
					t.Errorf("%d problems, want 5: %v", len(txn.Problems), txn.Problems)
				}
				if len(txn.KeyCounts) != 1 || txn.KeyCounts[0].OneTimeKeys["ok"] != 3 || len(txn.KeyCounts[0].OneTimeKeys) != 1 ||
					!txn.KeyCounts[0].HasFallback || !slices.Equal(txn.KeyCounts[0].UnusedFallback, []string{"k"}) {
					t.Errorf("counts %+v", txn.KeyCounts)
				}
			}},
		{name: "unstable keys as Synapse sends them", body: `{"events": [],
			"ephemeral": [{"type": "m.typing", "room_id": "!r:hs", "content": {}}],
			"de.sorunome.msc2409.ephemeral": [{"type": "m.typing", "room_id": "!r:hs", "content": {}}],
			"de.sorunome.msc2409.to_device": [{"type": "m.room.encrypted", "sender": "@b:hs", "to_user_id": "@a:hs", "to_device_id": "D", "content": {"x": 1}}],
			"org.matrix.msc3202.device_lists": {"changed": ["@b:hs"], "left": ["@c:hs"]},
			"org.matrix.msc3202.device_one_time_key_counts": {"@a:hs": {"D": {"signed_curve25519": 1}}},
			"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"signed_curve25519": 5, "org.matrix.msc2883.v1.dmls.key_package.1": 7}}},
			"org.matrix.msc3202.device_unused_fallback_key_types": {"@a:hs": {"D": ["signed_curve25519"]}, "@b:hs": {"E": []}}}`,
			check: func(t *testing.T, txn *Transaction) {
				if len(txn.Ephemeral) != 1 {
					t.Errorf("ephemeral taken from both keys: %d", len(txn.Ephemeral))
				}
				if len(txn.ToDevice) != 1 || txn.ToDevice[0].ToDeviceID != "D" || string(txn.ToDevice[0].Content) != `{"x": 1}` {
					t.Errorf("to-device %+v", txn.ToDevice)
				}
				if len(txn.DeviceLists) != 2 || txn.DeviceLists[0].UserID != "@b:hs" || txn.DeviceLists[0].Left ||
					txn.DeviceLists[1].UserID != "@c:hs" || !txn.DeviceLists[1].Left {
					t.Errorf("device lists %+v", txn.DeviceLists)
				}
				if len(txn.KeyCounts) != 2 {
					t.Fatalf("key counts %+v, want two devices", txn.KeyCounts)
				}
				a, b := txn.KeyCounts[0], txn.KeyCounts[1]
				if a.OneTimeKeys["signed_curve25519"] != 5 || a.OneTimeKeys["org.matrix.msc2883.v1.dmls.key_package.1"] != 7 ||
					!a.HasFallback || len(a.UnusedFallback) != 1 {
					t.Errorf("counts of @a:hs/D %+v", a)
				}
				if b.UserID != "@b:hs" || b.OneTimeKeys != nil || !b.HasFallback || len(b.UnusedFallback) != 0 {
					t.Errorf("counts of @b:hs/E %+v", b)
				}
			}},
		{name: "stable keys win over unstable", body: `{"events": [],
			"to_device": [{"type": "stable", "sender": "@b:hs", "to_user_id": "@a:hs", "to_device_id": "D"}],
			"de.sorunome.msc2409.to_device": [{"type": "unstable", "sender": "@b:hs", "to_user_id": "@a:hs", "to_device_id": "D"}],
			"device_one_time_keys_count": {"@a:hs": {"D": {"k": 1}}},
			"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"k": 2}}},
			"device_lists": {"changed": ["@s:hs"]},
			"org.matrix.msc3202.device_lists": {"changed": ["@u:hs"]}}`,
			check: func(t *testing.T, txn *Transaction) {
				if len(txn.ToDevice) != 1 || txn.ToDevice[0].Type != "stable" {
					t.Errorf("to-device %+v", txn.ToDevice)
				}
				if len(txn.KeyCounts) != 1 || txn.KeyCounts[0].OneTimeKeys["k"] != 1 {
					t.Errorf("counts %+v", txn.KeyCounts)
				}
				if len(txn.DeviceLists) != 1 || txn.DeviceLists[0].UserID != "@s:hs" {
					t.Errorf("device lists %v", txn.DeviceLists)
				}
			}},
		{name: "wrong types in extensions", body: `{"events": [], "device_lists": [1],
			"device_one_time_keys_count": "x", "device_unused_fallback_key_types": {"@a:hs": {"D": "x"}},
			"ephemeral": {}, "to_device": 3}`,
			check: func(t *testing.T, txn *Transaction) {
				if len(txn.Problems) != 5 {
					t.Errorf("%d problems, want 5: %v", len(txn.Problems), txn.Problems)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			txn, err := ParseTransaction([]byte(tt.body))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, txn)
			assertStorable(t, txn)
		})
	}
}

// PoisonElements are elements of transactions that PostgreSQL would
// refuse if they reached it, or that are not what their key says, each
// with the part of the transaction it goes in. Every one must be skipped
// with a problem, never accepted. The spine's end-to-end test sends them
// to the real binary too.
var PoisonElements = []struct {
	Name, Key, JSON string
}{
	{"NUL in event type", "events", `{"type": "m.x\u0000y", "room_id": "!r:hs", "event_id": "$p1", "sender": "@a:hs", "content": {}}`},
	{"NUL in room id", "events", `{"type": "m.room.message", "room_id": "!r\u0000:hs", "event_id": "$p2", "sender": "@a:hs", "content": {}}`},
	{"NUL in event id", "events", `{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$p\u00003", "sender": "@a:hs", "content": {}}`},
	{"NUL in sender", "events", `{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$p4", "sender": "@a\u0000:hs", "content": {}}`},
	{"NUL in state key", "events", `{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$p5", "sender": "@a:hs", "state_key": "@a\u0000:hs", "content": {"membership": "join"}}`},
	{"NUL in membership", "events", `{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$p6", "sender": "@a:hs", "state_key": "@a:hs", "content": {"membership": "jo\u0000in"}}`},
	{"number as type", "events", `{"type": 5, "room_id": "!r:hs", "event_id": "$p7", "sender": "@a:hs", "content": {}}`},
	{"object as room id", "events", `{"type": "m.room.message", "room_id": {}, "event_id": "$p8", "sender": "@a:hs", "content": {}}`},
	{"room id without sigil", "events", `{"type": "m.room.message", "room_id": "r:hs", "event_id": "$p9", "sender": "@a:hs", "content": {}}`},
	{"event id of 300 bytes", "events", `{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$` + strings.Repeat("e", 299) + `", "sender": "@a:hs", "content": {}}`},
	{"content not an object", "events", `{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$p10", "sender": "@a:hs", "content": [1]}`},
	{"negative origin_server_ts", "events", `{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$p11", "sender": "@a:hs", "content": {}, "origin_server_ts": -5}`},
	{"fractional origin_server_ts", "events", `{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$p12", "sender": "@a:hs", "content": {}, "origin_server_ts": 1.5}`},
	{"invalid UTF-8 in event type", "events", "{\"type\": \"m.x\xffy\", \"room_id\": \"!r:hs\", \"event_id\": \"$p13\", \"sender\": \"@a:hs\", \"content\": {}}"},
	{"invalid UTF-8 in content", "events", "{\"type\": \"m.room.message\", \"room_id\": \"!r:hs\", \"event_id\": \"$p14\", \"sender\": \"@a:hs\", \"content\": {\"body\": \"\xfe\"}}"},
	{"NUL in to-device type", "to_device", `{"type": "t\u0000", "sender": "@b:hs", "to_user_id": "@a:hs", "to_device_id": "D", "content": {}}`},
	{"NUL in to-device device", "to_device", `{"type": "t", "sender": "@b:hs", "to_user_id": "@a:hs", "to_device_id": "D\u0000", "content": {}}`},
	{"to-device without device", "to_device", `{"type": "t", "sender": "@b:hs", "to_user_id": "@a:hs", "content": {}}`},
	{"NUL in ephemeral type", "ephemeral", `{"type": "m.typ\u0000ing", "room_id": "!r:hs", "content": {}}`},
}

func TestParseTransactionSkipsPoison(t *testing.T) {
	for _, p := range PoisonElements {
		t.Run(p.Name, func(t *testing.T) {
			key := p.Key
			if key == "to_device" {
				key = "de.sorunome.msc2409.to_device"
			}
			txn, err := ParseTransaction([]byte(`{"events": [], "` + key + `": [` + p.JSON + `]}`))
			if err != nil {
				t.Fatal(err)
			}
			if len(txn.Events)+len(txn.ToDevice)+len(txn.Ephemeral) != 0 || len(txn.Problems) != 1 {
				t.Fatalf("poison accepted: %+v", txn)
			}
			assertStorable(t, txn)
		})
	}
	// Counts out of an integer column's range, and bad keys of the maps.
	for name, body := range map[string]string{
		"count above int32":   `{"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"k": 2147483648}}}}`,
		"count of 1e30":       `{"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"k": 1e30}}}}`,
		"negative count":      `{"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"k": -1}}}}`,
		"NUL in algorithm":    `{"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"k\u0000": 1}}}}`,
		"NUL in count user":   `{"org.matrix.msc3202.device_one_time_keys_count": {"@a\u0000:hs": {"D": {"k": 1}}}}`,
		"empty count device":  `{"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"": {"k": 1}}}}`,
		"NUL in fallback alg": `{"org.matrix.msc3202.device_unused_fallback_key_types": {"@a:hs": {"D": ["x\u0000"]}}}`,
		"NUL in device list":  `{"org.matrix.msc3202.device_lists": {"changed": ["@a\u0000:hs"]}}`,
		"number in left list": `{"org.matrix.msc3202.device_lists": {"left": [7]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			txn, err := ParseTransaction([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if len(txn.KeyCounts)+len(txn.DeviceLists) != 0 || len(txn.Problems) != 1 {
				t.Fatalf("poison accepted: %+v", txn)
			}
		})
	}
}

// assertStorable checks what the parser accepted against what the
// database accepts: no NUL, valid UTF-8, within limits, counts in range.
func assertStorable(t *testing.T, txn *Transaction) {
	t.Helper()
	check := func(what, s string) {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 || len(s) > 255 {
			t.Fatalf("accepted unstorable %s %q", what, s)
		}
	}
	for _, ev := range txn.Events {
		if ev.Type == "" || ev.RoomID == "" || ev.EventID == "" || ev.Sender == "" {
			t.Fatalf("accepted incomplete event %+v", ev)
		}
		check("type", ev.Type)
		check("room id", string(ev.RoomID))
		check("event id", string(ev.EventID))
		check("sender", string(ev.Sender))
		check("membership", ev.Membership)
		if ev.StateKey != nil {
			check("state key", *ev.StateKey)
		}
		if ev.Type == "m.room.member" && (ev.StateKey == nil || ev.Membership == "") {
			t.Fatalf("accepted member event without state key or membership %+v", ev)
		}
		if ev.OriginServerTS < 0 {
			t.Fatalf("accepted negative timestamp")
		}
	}
	for _, ev := range txn.Ephemeral {
		check("ephemeral type", ev.Type)
		check("ephemeral room", string(ev.RoomID))
	}
	for _, ev := range txn.ToDevice {
		if ev.ToUserID == "" || ev.ToDeviceID == "" || ev.Sender == "" || ev.Type == "" {
			t.Fatalf("accepted incomplete to-device event %+v", ev)
		}
		check("to-device type", ev.Type)
		check("to-device sender", string(ev.Sender))
		check("to-device user", string(ev.ToUserID))
		check("to-device device", string(ev.ToDeviceID))
	}
	for _, c := range txn.DeviceLists {
		check("device list user", string(c.UserID))
	}
	for _, k := range txn.KeyCounts {
		if err := k.Validate(); err != nil {
			t.Fatalf("accepted invalid key counts: %v", err)
		}
		if _, err := inbound.ParseKeyCounts(k.Encode()); err != nil {
			t.Fatalf("key counts do not survive their payload encoding: %v", err)
		}
	}
}

// FuzzParseTransaction checks that no body, however hostile, panics the
// parser, and that whatever it accepts can be stored.
func FuzzParseTransaction(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"events": []}`, `[]`, `null`, `{"events": [{"type": "m.room.member", "room_id": "!r", "event_id": "$e", "sender": "@s:h", "state_key": "@s:h", "content": {"membership": "join"}}]}`,
		`{"de.sorunome.msc2409.to_device": [{"type": "t", "sender": "@s:h", "to_user_id": "@u:h", "to_device_id": "D", "content": {}}]}`,
		`{"org.matrix.msc3202.device_one_time_keys_count": {"@u:h": {"D": {"a": 1}}}, "org.matrix.msc3202.device_lists": {"changed": ["@x:h"], "left": []}}`,
		`{"org.matrix.msc3202.device_unused_fallback_key_types": {"@u:h": {"D": ["a"]}}, "ephemeral": [{"type": "m.typing"}]}`,
	} {
		f.Add([]byte(seed))
	}
	for _, p := range PoisonElements {
		f.Add([]byte(`{"events": [` + p.JSON + `]}`))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		txn, err := ParseTransaction(body)
		if err != nil {
			if !errors.Is(err, ErrNotJSON) && !errors.Is(err, ErrBadShape) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		assertStorable(t, txn)
	})
}
