package botapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/bots"
	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testdb"
)

func settings() config.BotAPI {
	cfg, err := config.Parse([]byte("botapi:\n  rate_limit: 5\n  rate_burst: 3\n"))
	if err != nil {
		panic(err)
	}
	return cfg.BotAPI
}

// newTestServer is a Server over a real database and registry, without
// groups: for what the API decides before it calls groups.
func newTestServer(t *testing.T, db *database.DB) *Server {
	var reg *bots.Registry
	if db != nil {
		reg = bots.New(db)
	}
	return New(Config{Settings: settings(), DB: db, Registry: reg, Metrics: NewMetrics(prometheus.NewRegistry()),
		Log: zerolog.New(zerolog.NewTestWriter(t))})
}

// TestOpenAPIMatchesRoutes fails when the handlers and openapi.json
// disagree: every route documented, every documented operation served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := newTestServer(t, nil)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	var documented, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	for _, rt := range s.routes {
		served = append(served, rt.method+" "+rt.path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	for _, d := range documented {
		if !slices.Contains(served, d) {
			t.Errorf("documented but not served: %s", d)
		}
	}
	for _, sv := range served {
		if !slices.Contains(documented, sv) {
			t.Errorf("served but not documented: %s", sv)
		}
	}
	// The mux itself routes each documented operation to its pattern.
	fill := strings.NewReplacer("{puppet}", "@mls_a:hs", "{room}", "!r:hs", "{device}", "DEV")
	for _, d := range documented {
		method, path, _ := strings.Cut(d, " ")
		req := httptest.NewRequest(method, fill.Replace(path), nil)
		if _, pattern := s.mux.Handler(req); pattern != d {
			t.Errorf("%s %s routes to %q", method, fill.Replace(path), pattern)
		}
	}
	// And the document is what /v1/openapi.json serves.
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/openapi.json", nil))
	if rec.Code != 200 || rec.Body.String() != string(OpenAPI()) {
		t.Errorf("GET /v1/openapi.json: %d", rec.Code)
	}
}

func TestUnknownRoutesAnswerJSON(t *testing.T) {
	s := newTestServer(t, nil)
	for _, tt := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/nothing", 404, CodeNotFound},
		{"PATCH", "/v1/puppets", 405, CodeMethodNotAllowed},
		{"DELETE", "/v1/events", 405, CodeMethodNotAllowed},
	} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		var e Error
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != tt.status || e.Code != tt.code {
			t.Errorf("%s %s: %d %s (%v)", tt.method, tt.path, rec.Code, rec.Body, err)
		}
	}
}

func openDB(t *testing.T) *database.DB { return testdb.Open(t, 8) }

// TestAuthOwnershipLimitsAndBadInput covers what the API decides before
// it calls groups, against a real registry: tokens, another bot's
// puppet, the rate limit, and malformed requests naming their field.
func TestAuthOwnershipLimitsAndBadInput(t *testing.T) {
	db := openDB(t)
	s := newTestServer(t, db)
	ctx := context.Background()
	tokA, err := s.cfg.Registry.Add(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	tokB, _ := s.cfg.Registry.Add(ctx, "b")
	if err := s.cfg.Registry.Claim(ctx, "a", "@mls_pa:hs"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	do := func(token, method, path, body string, header ...string) (int, Error, http.Header) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var e Error
		if resp.StatusCode >= 400 {
			if err := json.Unmarshal(raw, &e); err != nil || e.Code == "" || e.Message == "" {
				t.Errorf("%s %s: %d answer is not a JSON error: %s", method, path, resp.StatusCode, raw)
			}
		}
		return resp.StatusCode, e, resp.Header
	}
	tests := []struct {
		name, token, method, path, body string
		header                          []string
		status                          int
		code, field                     string
	}{
		{"no token", "", "GET", "/v1/whoami", "", nil, 401, CodeUnauthorized, "Authorization"},
		{"bad token", "mlsbot_nope", "GET", "/v1/whoami", "", nil, 401, CodeUnauthorized, "Authorization"},
		{"whoami", tokA, "GET", "/v1/whoami", "", nil, 200, "", ""},
		{"another bot's puppet", tokB, "GET", "/v1/puppets/@mls_pa:hs", "", nil, 403, CodeForbidden, "puppet"},
		{"another bot's puppet's room", tokB, "POST", "/v1/puppets/@mls_pa:hs/rooms/!r:hs/messages", `{"type":"m.room.message","content":{}}`, nil, 403, CodeForbidden, "puppet"},
		{"unknown puppet", tokA, "GET", "/v1/puppets/@mls_zz:hs/devices", "", nil, 404, CodeUnknownPuppet, "puppet"},
		{"not a user id", tokA, "GET", "/v1/puppets/alice/devices", "", nil, 400, CodeInvalidField, "puppet"},
		{"unknown field", tokA, "POST", "/v1/puppets", `{"name":"x","colour":"red"}`, nil, 400, CodeUnknownField, "colour"},
		{"wrong type", tokA, "POST", "/v1/puppets", `{"name":7}`, nil, 400, CodeInvalidField, "name"},
		{"missing name", tokA, "POST", "/v1/puppets", `{}`, nil, 400, CodeMissingField, "name"},
		{"bad name", tokA, "POST", "/v1/puppets", `{"name":"Bad Name"}`, nil, 400, CodeInvalidField, "name"},
		{"bad avatar", tokA, "POST", "/v1/puppets", `{"name":"x","avatar_url":"http://x/y"}`, nil, 400, CodeInvalidField, "avatar_url"},
		{"not json", tokA, "POST", "/v1/puppets", `{"name":`, nil, 400, CodeInvalidJSON, "body"},
		{"array body", tokA, "POST", "/v1/puppets", `[1]`, nil, 400, CodeInvalidJSON, "body"},
		{"trailing data", tokA, "POST", "/v1/puppets", `{"name":"x"} {}`, nil, 400, CodeInvalidJSON, "body"},
		{"oversize", tokA, "POST", "/v1/puppets", `{"name":"` + strings.Repeat("x", 300<<10) + `"}`, nil, 413, CodeBodyTooLarge, "body"},
		{"bad device", tokA, "POST", "/v1/puppets/@mls_pa:hs/devices", `{"device_id":"a b"}`, nil, 400, CodeInvalidField, "device_id"},
		{"bad room id", tokA, "GET", "/v1/puppets/@mls_pa:hs/rooms/room%20x", "", nil, 400, CodeInvalidField, "room"},
		{"bad query", tokA, "GET", "/v1/events?afterr=3", "", nil, 400, CodeUnknownField, "afterr"},
		{"bad Last-Event-ID", tokA, "GET", "/v1/events", "", []string{"Last-Event-ID", "x"}, 400, CodeInvalidField, "Last-Event-ID"},
		{"other bot's puppet stream", tokB, "GET", "/v1/events?puppet=@mls_pa:hs", "", nil, 403, CodeForbidden, "puppet[0]"},
		{"bad webhook url", tokA, "PUT", "/v1/webhook", `{"url":"ftp://x"}`, nil, 400, CodeInvalidField, "url"},
		{"webhook credentials", tokA, "PUT", "/v1/webhook", `{"url":"http://u:p@x/"}`, nil, 400, CodeInvalidField, "url"},
		{"no webhook", tokA, "GET", "/v1/webhook", "", nil, 404, CodeNoWebhook, ""},
	}
	for _, tt := range tests {
		status, e, _ := do(tt.token, tt.method, tt.path, tt.body, tt.header...)
		if status != tt.status || e.Code != tt.code || e.Field != tt.field {
			t.Errorf("%s: %d %q field %q, want %d %q field %q (%s)", tt.name, status, e.Code, e.Field, tt.status, tt.code, tt.field, e.Message)
		}
		// Rate limit: 3 at once, 5 a second; keep under it here.
		time.Sleep(210 * time.Millisecond)
	}
	// Past the burst: 429 with Retry-After.
	limited := 0
	for range 10 {
		status, e, h := do(tokA, "GET", "/v1/whoami", "")
		if status == 429 {
			limited++
			if e.Code != CodeRateLimited || h.Get("Retry-After") == "" {
				t.Errorf("429 without code or Retry-After: %+v %v", e, h)
			}
		}
	}
	if limited == 0 {
		t.Error("10 requests at once were not rate limited")
	}
	// A revoked bot's token stops working.
	if err := s.cfg.Registry.Revoke(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := do(tokB, "GET", "/v1/whoami", ""); status != 401 {
		t.Errorf("revoked bot: %d", status)
	}
}

func TestSignature(t *testing.T) {
	// A fixed vector, so that the documented Python check stays right:
	// hmac.new(b"whsec_test", b"1700000000." + b'{"a":1}', sha256).hexdigest()
	got := Sign([]byte("whsec_test"), time.Unix(1700000000, 0), []byte(`{"a":1}`))
	want := "t=1700000000,v1=" + pythonVector
	if got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

// pythonVector is hmac.new(b"whsec_test", b'1700000000.{"a":1}', hashlib.sha256).hexdigest().
const pythonVector = "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(2, 2, func() time.Time { return now })
	for i := range 2 {
		if ok, _ := l.allow("a"); !ok {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	ok, wait := l.allow("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("third: %v %v", ok, wait)
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("another bot's bucket is shared")
	}
	now = now.Add(500 * time.Millisecond)
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("refilled bucket refused")
	}
}

func config50ms() config.Duration { return config.Duration(50 * time.Millisecond) }
