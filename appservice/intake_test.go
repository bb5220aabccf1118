package appservice

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/migrations"
)

const testHSToken = "hs0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func testDB(t *testing.T) *database.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := database.Open(ctx, testenv.Database(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}
	return db
}

type intakeFixture struct {
	db      *database.DB
	metrics *Metrics
	mux     *http.ServeMux
	woken   int
}

func newIntakeFixture(t *testing.T) *intakeFixture {
	f := &intakeFixture{db: testDB(t), metrics: NewMetrics(prometheus.NewRegistry()), mux: http.NewServeMux()}
	NewIntake(IntakeConfig{HSToken: testHSToken, MaxBodyBytes: 4096, Store: f.db, Puppets: f.db,
		Stored: func() { f.woken++ }, Metrics: f.metrics, Log: zerolog.New(zerolog.NewTestWriter(t))}).Register(f.mux)
	return f
}

func (f *intakeFixture) do(method, path, auth, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec
}

func errcode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Errcode string `json:"errcode"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("response %q is not JSON: %v", rec.Body.String(), err)
	}
	return body.Errcode
}

func (f *intakeFixture) stored(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM appservice_transaction`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestIntakeTransactions(t *testing.T) {
	const txn = "/_matrix/app/v1/transactions/"
	good := `{"events": [{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$1", "sender": "@a:hs", "content": {}}]}`
	tests := []struct {
		name, method, path, auth, body string
		status                         int
		errcode                        string
		stored                         int // new rows
	}{
		{"no token", "PUT", txn + "1", "", good, 401, "M_UNAUTHORIZED", 0},
		{"not a bearer token", "PUT", txn + "1", "Basic " + testHSToken, good, 401, "M_UNAUTHORIZED", 0},
		{"wrong token", "PUT", txn + "1", "Bearer " + testHSToken[:len(testHSToken)-1] + "x", good, 403, "M_FORBIDDEN", 0},
		{"prefix of token", "PUT", txn + "1", "Bearer " + testHSToken[:10], good, 403, "M_FORBIDDEN", 0},
		{"token in query", "PUT", txn + "q1?access_token=" + testHSToken, "", good, 200, "", 1},
		{"wrong token in query", "PUT", txn + "q2?access_token=nope", "", good, 403, "M_FORBIDDEN", 0},
		{"malformed JSON", "PUT", txn + "2", "Bearer " + testHSToken, `{"events": [`, 400, "M_NOT_JSON", 0},
		{"JSON that is no transaction", "PUT", txn + "3", "Bearer " + testHSToken, `{"events": 5}`, 400, "M_BAD_JSON", 0},
		{"oversized body", "PUT", txn + "4", "Bearer " + testHSToken, `{"events": [], "pad": "` + strings.Repeat("x", 5000) + `"}`, 413, "M_TOO_LARGE", 0},
		{"good", "PUT", txn + "5", "Bearer " + testHSToken, good, 200, "", 1},
		{"GET is not allowed", "GET", txn + "6", "Bearer " + testHSToken, "", 405, "M_UNRECOGNIZED", 0},
	}
	f := newIntakeFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.stored(t)
			rec := f.do(tt.method, tt.path, tt.auth, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.status, rec.Body)
			}
			if tt.errcode != "" {
				if got := errcode(t, rec); got != tt.errcode {
					t.Errorf("errcode %s, want %s", got, tt.errcode)
				}
			}
			if got := f.stored(t) - before; got != tt.stored {
				t.Errorf("%d transactions stored, want %d", got, tt.stored)
			}
		})
	}
}

func TestIntakeRepeatedTxnID(t *testing.T) {
	f := newIntakeFixture(t)
	body := `{"events": []}`
	for i := range 3 {
		rec := f.do("PUT", "/_matrix/app/v1/transactions/abc", "Bearer "+testHSToken, body)
		if rec.Code != 200 || rec.Body.String() != "{}\n" {
			t.Fatalf("attempt %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if n := f.stored(t); n != 1 {
		t.Fatalf("%d rows for one txnId", n)
	}
	if f.woken != 1 {
		t.Errorf("processor woken %d times, want once", f.woken)
	}
	if got := testutil.ToFloat64(f.metrics.TransactionsReceived.WithLabelValues("duplicate")); got != 2 {
		t.Errorf("duplicate counter %v, want 2", got)
	}
}

func TestIntakeOtherEndpoints(t *testing.T) {
	f := newIntakeFixture(t)
	if err := f.db.SavePuppet(context.Background(), "@mls_known:hs"); err != nil {
		t.Fatal(err)
	}
	auth := "Bearer " + testHSToken
	tests := []struct {
		name, method, path, auth, body string
		status                         int
		errcode                        string
	}{
		{"known puppet", "GET", "/_matrix/app/v1/users/@mls_known:hs", auth, "", 200, ""},
		{"unknown user", "GET", "/_matrix/app/v1/users/@mls_other:hs", auth, "", 404, "M_NOT_FOUND"},
		{"user query without token", "GET", "/_matrix/app/v1/users/@mls_known:hs", "", "", 401, "M_UNAUTHORIZED"},
		{"room alias", "GET", "/_matrix/app/v1/rooms/%23a:hs", auth, "", 404, "M_NOT_FOUND"},
		{"ping", "POST", "/_matrix/app/v1/ping", auth, `{"transaction_id": "p1"}`, 200, ""},
		{"ping with bad token", "POST", "/_matrix/app/v1/ping", "Bearer x", `{}`, 403, "M_FORBIDDEN"},
		{"ping with bad JSON", "POST", "/_matrix/app/v1/ping", auth, `{`, 400, "M_NOT_JSON"},
		{"third-party protocol", "GET", "/_matrix/app/v1/thirdparty/protocol/irc", auth, "", 404, "M_UNRECOGNIZED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do(tt.method, tt.path, tt.auth, tt.body)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tt.status, rec.Body)
			}
			if tt.errcode != "" {
				if got := errcode(t, rec); got != tt.errcode {
					t.Errorf("errcode %s, want %s", got, tt.errcode)
				}
			}
		})
	}
}
