package keys

import (
	"testing"

	"maunium.net/go/mautrix/id"
)

// A /keys/query answer says nothing about the users of a homeserver it
// could not reach: they are unknown, not deviceless.
func TestQueryAnswerKnows(t *testing.T) {
	raw := []byte(`{
		"device_keys": {
			"@a:here": {"DEV": {}},
			"@b:here": {},
			"@c:there:8448": {}
		},
		"failures": {"there:8448": {"errcode": "M_UNREACHABLE"}}
	}`)
	a, err := parseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		user id.UserID
		want bool
	}{
		{"@a:here", true},
		{"@b:here", true},        // listed without devices: deviceless
		{"@c:there:8448", false}, // its server failed
		{"@d:here", false},       // not in the answer
		{"@e:elsewhere.org", false},
	} {
		if got := a.knows(tt.user); got != tt.want {
			t.Errorf("knows(%s) = %v, want %v", tt.user, got, tt.want)
		}
	}
}
