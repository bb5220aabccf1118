package botapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The request decoders take whatever a bot sends: they must never panic,
// and must refuse with a 4xx that names a field or accept a value that
// passes the same checks the handlers make.

func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{`{"name":"x","display_name":"X","avatar_url":"mxc://hs/abc","device_id":"D"}`,
		`{"type":"m.room.message","content":{"body":"hi"}}`, `{"invite":["@a:hs"],"preset":"private_chat"}`,
		`{"via":["hs"]}`, `{"user_id":"@a:hs","reason":"r"}`, `{"url":"http://x/","after":0}`, ``, `null`, `[]`,
		`{"name":1}`, `{"x":1}`, `{"content":"s"}`, "{\"name\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		targets := []any{&createPuppetRequest{}, &addDeviceRequest{}, &createRoomRequest{}, &joinRequest{},
			&userRequest{}, &sendRequest{}, &webhookRequest{}}
		for _, v := range targets {
			for _, emptyOK := range []bool{false, true} {
				if e := decodeJSON(body, v, emptyOK); e != nil {
					if e.Status < 400 || e.Status > 499 || e.Code == "" || e.Field == "" {
						t.Fatalf("decode %q into %T: %+v", body, v, e)
					}
				}
			}
		}
	})
}

func FuzzCheckIdentifiers(f *testing.F) {
	for _, s := range []string{"@a:hs", "!r:hs:8448", "DEV", "mxc://hs/m", "http://x/", "@a:[::1]:80", "", "\x00", "@A:hs"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if u, e := checkUserID("f", s); e == nil {
			if u == "" || len(u) > 255 || s[0] != '@' {
				t.Fatalf("accepted user id %q", s)
			}
		} else if e.Field != "f" || e.Status != 400 {
			t.Fatalf("%+v", e)
		}
		if r, e := checkRoomID("f", s); e == nil && (r == "" || s[0] != '!') {
			t.Fatalf("accepted room id %q", s)
		}
		if _, e := checkDeviceID("f", s); e == nil && (len(s) == 0 || len(s) > 64) {
			t.Fatalf("accepted device id %q", s)
		}
		_ = checkContentURI("f", s)
		_ = checkWebhookURL("f", s)
		_ = checkText("f", s, 64)
		r := httptest.NewRequest(http.MethodGet, "/v1/events", nil)
		r.Header.Set("Last-Event-ID", s)
		if n, from, e := resumePoint(r); e == nil && from && n < 0 {
			t.Fatalf("resume point %d from %q", n, s)
		}
	})
}
