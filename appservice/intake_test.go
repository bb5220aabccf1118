package appservice

import (
	"context"
	"encoding/json"
	"io"
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

func testDB(t testing.TB) *database.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := database.Open(ctx, testenv.Database(t), database.Options{MaxConns: 8})
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
	NewIntake(IntakeConfig{HSToken: testHSToken, MaxBodyBytes: 4096, DB: f.db,
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
		{"txnId with a NUL", "PUT", txn + "a%00b", "Bearer " + testHSToken, good, 400, "M_INVALID_PARAM", 0},
		{"txnId not UTF-8", "PUT", txn + "a%FFb", "Bearer " + testHSToken, good, 400, "M_INVALID_PARAM", 0},
		{"txnId too long", "PUT", txn + strings.Repeat("x", 256), "Bearer " + testHSToken, good, 400, "M_INVALID_PARAM", 0},
		{"event with a NUL in its type is stored, the element skipped later", "PUT", txn + "7", "Bearer " + testHSToken,
			`{"events": [{"type": "m.x\u0000y", "room_id": "!r:hs", "event_id": "$n", "sender": "@a:hs", "content": {}}]}`, 200, "", 1},
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
	// Synapse on SQLite restarts its counter: the same txnId with another
	// body is a new transaction, and its retries are repeats of it.
	other := `{"events": [{"type": "m.room.message", "room_id": "!r:hs", "event_id": "$new", "sender": "@a:hs", "content": {}}]}`
	for range 2 {
		if rec := f.do("PUT", "/_matrix/app/v1/transactions/abc", "Bearer "+testHSToken, other); rec.Code != 200 {
			t.Fatalf("reused txnId: %d %s", rec.Code, rec.Body)
		}
	}
	if n := f.stored(t); n != 2 {
		t.Fatalf("%d rows after a reused txnId with a new body, want 2", n)
	}
	if f.woken != 2 {
		t.Errorf("processor woken %d times, want twice", f.woken)
	}
	if got := testutil.ToFloat64(f.metrics.TransactionsReceived.WithLabelValues("reused_txn_id")); got != 1 {
		t.Errorf("reused_txn_id counter %v, want 1", got)
	}
}

// TestIntakeBoundsBytesInFlight holds one request's body open so that its
// reservation is taken, and checks that the next request is refused with
// 503 instead of being read into memory, and accepted once the first is
// done.
func TestIntakeBoundsBytesInFlight(t *testing.T) {
	db := testDB(t)
	metrics := NewMetrics(prometheus.NewRegistry())
	mux := http.NewServeMux()
	NewIntake(IntakeConfig{HSToken: testHSToken, MaxBodyBytes: 4096, MaxInFlightBytes: 4096, DB: db,
		Metrics: metrics, Log: zerolog.New(zerolog.NewTestWriter(t))}).Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	body := `{"events": []}`
	pr, pw := io.Pipe()
	first := make(chan int)
	go func() {
		req, _ := http.NewRequest("PUT", srv.URL+"/_matrix/app/v1/transactions/slow", pr)
		req.ContentLength = 4096
		req.Header.Set("Authorization", "Bearer "+testHSToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- 0
			return
		}
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	put := func(txn string) int {
		req, _ := http.NewRequest("PUT", srv.URL+"/_matrix/app/v1/transactions/"+txn, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testHSToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(metrics.IntakeBytesInFlight) != 4096 {
		if time.Now().After(deadline) {
			t.Fatal("the slow request never reserved its bytes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := put("fast"); code != http.StatusServiceUnavailable {
		t.Fatalf("second request while 4096 bytes are in flight: %d, want 503", code)
	}
	// The slow body arrives (padded to its length) and its bytes are released.
	pw.Write([]byte(body + strings.Repeat(" ", 4096-len(body))))
	pw.Close()
	if code := <-first; code != http.StatusOK {
		t.Fatalf("slow request: %d, want 200", code)
	}
	if code := put("fast"); code != http.StatusOK {
		t.Fatalf("request after the slow one finished: %d, want 200", code)
	}
	if got := testutil.ToFloat64(metrics.TransactionsRejected.WithLabelValues("busy")); got != 1 {
		t.Errorf("busy rejections %v, want 1", got)
	}
}

func TestIntakeOtherEndpoints(t *testing.T) {
	f := newIntakeFixture(t)
	if err := database.SavePuppet(context.Background(), f.db, "@mls_known:hs"); err != nil {
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
		{"user id with a NUL", "GET", "/_matrix/app/v1/users/@mls_k%00nown:hs", auth, "", 400, "M_INVALID_PARAM"},
		{"user id not UTF-8", "GET", "/_matrix/app/v1/users/@mls_%FF:hs", auth, "", 400, "M_INVALID_PARAM"},
		{"user id without sigil", "GET", "/_matrix/app/v1/users/mls_known:hs", auth, "", 400, "M_INVALID_PARAM"},
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
