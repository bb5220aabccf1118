package appservice

import (
	"errors"
	"testing"

	"maunium.net/go/mautrix/id"
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
		{name: "no events", body: `{}`, check: func(t *testing.T, txn *Transaction) {
			if len(txn.Events) != 0 || len(txn.Problems) != 0 {
				t.Errorf("got %+v", txn)
			}
		}},
		{name: "member and message", body: `{"events": [
			{"type": "m.room.member", "room_id": "!r:hs", "event_id": "$1", "sender": "@a:hs", "state_key": "@a:hs", "content": {"membership": "join"}},
			{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$2", "sender": "@a:hs", "content": {"body": "hi"}}]}`,
			check: func(t *testing.T, txn *Transaction) {
				if len(txn.Events) != 2 || txn.Events[0].Membership != "join" || txn.Events[1].EventID != "$2" {
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
				if txn.OneTimeKeyCounts["@a:hs"]["D"]["ok"] != 3 || len(txn.OneTimeKeyCounts["@a:hs"]["D"]) != 1 {
					t.Errorf("counts %v", txn.OneTimeKeyCounts)
				}
			}},
		{name: "unstable keys as Synapse sends them", body: `{"events": [],
			"ephemeral": [{"type": "m.typing", "room_id": "!r:hs", "content": {}}],
			"de.sorunome.msc2409.ephemeral": [{"type": "m.typing", "room_id": "!r:hs", "content": {}}],
			"de.sorunome.msc2409.to_device": [{"type": "m.room.encrypted", "sender": "@b:hs", "to_user_id": "@a:hs", "to_device_id": "D", "content": {"x": 1}}],
			"org.matrix.msc3202.device_lists": {"changed": ["@b:hs"], "left": ["@c:hs"]},
			"org.matrix.msc3202.device_one_time_key_counts": {"@a:hs": {"D": {"signed_curve25519": 1}}},
			"org.matrix.msc3202.device_one_time_keys_count": {"@a:hs": {"D": {"signed_curve25519": 5, "org.matrix.msc2883.v1.dmls.key_package.1": 7}}},
			"org.matrix.msc3202.device_unused_fallback_key_types": {"@a:hs": {"D": ["signed_curve25519"]}}}`,
			check: func(t *testing.T, txn *Transaction) {
				if len(txn.Ephemeral) != 1 {
					t.Errorf("ephemeral taken from both keys: %d", len(txn.Ephemeral))
				}
				if len(txn.ToDevice) != 1 || txn.ToDevice[0].ToDeviceID != "D" || string(txn.ToDevice[0].Content) != `{"x": 1}` {
					t.Errorf("to-device %+v", txn.ToDevice)
				}
				if len(txn.DeviceLists.Changed) != 1 || txn.DeviceLists.Left[0] != "@c:hs" {
					t.Errorf("device lists %+v", txn.DeviceLists)
				}
				c := txn.OneTimeKeyCounts[id.UserID("@a:hs")][id.DeviceID("D")]
				if c["signed_curve25519"] != 5 || c["org.matrix.msc2883.v1.dmls.key_package.1"] != 7 {
					t.Errorf("counts %v", c)
				}
				if got := txn.UnusedFallbackKeyTypes["@a:hs"]["D"]; len(got) != 1 {
					t.Errorf("fallback %v", got)
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
				if txn.OneTimeKeyCounts["@a:hs"]["D"]["k"] != 1 {
					t.Errorf("counts %v", txn.OneTimeKeyCounts)
				}
				if txn.DeviceLists.Changed[0] != "@s:hs" {
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
		})
	}
}

// FuzzParseTransaction checks that no body, however hostile, panics the
// parser, and that whatever it accepts is internally consistent.
func FuzzParseTransaction(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"events": []}`, `[]`, `null`, `{"events": [{"type": "m.room.member", "room_id": "!r", "event_id": "$e", "sender": "@s", "state_key": "@s", "content": {"membership": "join"}}]}`,
		`{"de.sorunome.msc2409.to_device": [{"type": "t", "sender": "@s", "to_user_id": "@u", "to_device_id": "D", "content": {}}]}`,
		`{"org.matrix.msc3202.device_one_time_keys_count": {"@u": {"D": {"a": 1}}}, "org.matrix.msc3202.device_lists": {"changed": ["@x"], "left": []}}`,
		`{"org.matrix.msc3202.device_unused_fallback_key_types": {"@u": {"D": ["a"]}}, "ephemeral": [{"type": "m.typing"}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		txn, err := ParseTransaction(body)
		if err != nil {
			if !errors.Is(err, ErrNotJSON) && !errors.Is(err, ErrBadShape) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		for _, ev := range txn.Events {
			if ev.Type == "" || ev.RoomID == "" || ev.EventID == "" || ev.Sender == "" {
				t.Fatalf("accepted incomplete event %+v", ev)
			}
			if ev.Type == "m.room.member" && (ev.StateKey == nil || ev.Membership == "") {
				t.Fatalf("accepted member event without state key or membership %+v", ev)
			}
		}
		for _, ev := range txn.ToDevice {
			if ev.ToUserID == "" || ev.ToDeviceID == "" || ev.Sender == "" || ev.Type == "" {
				t.Fatalf("accepted incomplete to-device event %+v", ev)
			}
		}
		for _, devs := range txn.OneTimeKeyCounts {
			for _, algs := range devs {
				for _, n := range algs {
					if n < 0 {
						t.Fatalf("accepted negative count")
					}
				}
			}
		}
	})
}
