package appservice

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/database"
)

func TestHandoff(t *testing.T) {
	a, b, c := &Transaction{}, &Transaction{}, &Transaction{}
	var clock time.Time
	tests := []struct {
		name string
		run  func(h *Handoff) []*Transaction // what take returns, in order
		want []*Transaction
		held int
	}{
		{"taken once", func(h *Handoff) []*Transaction {
			h.put(1, 10, a)
			return []*Transaction{h.take(1), h.take(1)}
		}, []*Transaction{a, nil}, 0},
		{"unknown", func(h *Handoff) []*Transaction { return []*Transaction{h.take(7)} }, []*Transaction{nil}, 0},
		// The splitter needs the oldest first: one past the budget is
		// not held, rather than the oldest dropped.
		{"past the budget not held", func(h *Handoff) []*Transaction {
			h.put(1, 60, a)
			h.put(2, 60, b)
			return []*Transaction{h.take(1), h.take(2)}
		}, []*Transaction{a, nil}, 0},
		{"taken ones free the budget", func(h *Handoff) []*Transaction {
			h.put(1, 60, a)
			got := h.take(1)
			h.put(2, 60, b)
			return []*Transaction{got, h.take(2)}
		}, []*Transaction{a, b}, 0},
		{"one larger than the budget is held alone", func(h *Handoff) []*Transaction {
			h.put(1, 500, a)
			h.put(2, 10, b)
			return []*Transaction{h.take(1), h.take(2)}
		}, []*Transaction{a, nil}, 0},
		// Seqs before a taken one were split elsewhere.
		{"passed ones dropped", func(h *Handoff) []*Transaction {
			h.put(1, 30, a)
			h.put(2, 30, b)
			got := h.take(2)
			h.put(3, 30, c)
			return []*Transaction{got, h.take(1), h.take(3)}
		}, []*Transaction{b, nil, c}, 0},
		{"passed by a miss", func(h *Handoff) []*Transaction {
			h.put(1, 30, a)
			h.put(3, 30, c)
			return []*Transaction{h.take(2)}
		}, []*Transaction{nil}, 1},
		{"the first put of a seq stays", func(h *Handoff) []*Transaction {
			h.put(1, 10, a)
			h.put(1, 10, b)
			return []*Transaction{h.take(1)}
		}, []*Transaction{a}, 0},
		{"untaken ones are held", func(h *Handoff) []*Transaction {
			h.put(1, 10, a)
			h.put(2, 10, b)
			return nil
		}, nil, 2},
		{"old ones expire", func(h *Handoff) []*Transaction {
			h.put(1, 10, a)
			clock = clock.Add(handoffMaxAge + time.Second)
			h.put(2, 10, b)
			return []*Transaction{h.take(1), h.take(2)}
		}, []*Transaction{nil, b}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandoff(100)
			clock = time.Unix(1e9, 0)
			h.now = func() time.Time { return clock }
			if got := tt.run(h); !slices.Equal(got, tt.want) {
				t.Errorf("took %p, want %p", got, tt.want)
			}
			if n := h.len(); n != tt.held {
				t.Errorf("%d held, want %d", n, tt.held)
			}
		})
	}
	var none *Handoff // a splitter or intake without one
	none.put(1, 10, a)
	if none.take(1) != nil {
		t.Error("a nil Handoff gave a transaction")
	}
}

// TestSplitterTakesWhatIntakeParsed: a transaction stored through the
// intake is split from the intake's parse (the handoff), one stored by
// another process from the stored body.
func TestSplitterTakesWhatIntakeParsed(t *testing.T) {
	ctx := context.Background()
	db := testDB(t)
	metrics := NewMetrics(prometheus.NewRegistry())
	log := zerolog.New(zerolog.NewTestWriter(t))
	splitter := NewSplitter(db, metrics, 3, log)
	splitter.Handoff = NewHandoff(1 << 20)
	mux := http.NewServeMux()
	NewIntake(IntakeConfig{HSToken: testHSToken, MaxBodyBytes: 4096, DB: db, Handoff: splitter.Handoff,
		Metrics: metrics, Log: log}).Register(mux)
	body := func(room string) string { return fmt.Sprintf(`{"events": [%s]}`, roomEvent(room, 1)) }

	req := httptest.NewRequest(http.MethodPut, "/_matrix/app/v1/transactions/t1", strings.NewReader(body("!intake:hs")))
	req.Header.Set("Authorization", "Bearer "+testHSToken)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("intake: %d %s", rec.Code, rec.Body)
	}
	if n := splitter.Handoff.len(); n != 1 {
		t.Fatalf("handoff holds %d transactions after the intake stored one, want 1", n)
	}
	// What the splitter takes from the handoff is what it splits: swap in
	// another room's event to see which one it used.
	var seq int64
	if err := db.Pool.QueryRow(ctx, `SELECT seq FROM appservice_transaction WHERE txn_id = 't1'`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	other, err := ParseTransaction([]byte(body("!handoff:hs")))
	if err != nil {
		t.Fatal(err)
	}
	splitter.Handoff.take(seq)
	splitter.Handoff.put(seq, 1, other)
	// Stored by another process: not in the handoff.
	if _, _, _, err := database.SaveTransaction(ctx, db, "t2", []byte(body("!stored:hs"))); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := splitter.Step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.Pool.Query(ctx, `SELECT room_id FROM work_item ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var rooms []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		rooms = append(rooms, r)
	}
	if want := []string{"!handoff:hs", "!stored:hs"}; !slices.Equal(rooms, want) || rows.Err() != nil {
		t.Errorf("work items of rooms %v (%v), want %v", rooms, rows.Err(), want)
	}
	if n := splitter.Handoff.len(); n != 0 {
		t.Errorf("handoff holds %d transactions after the split, want 0", n)
	}
}
