package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// failing fails the room events whose ids it names: with a plain error
// (retried, then parked), a permanent one, or a panic.
type failing struct {
	mu    sync.Mutex
	fail  map[string]string // event id -> "error", "permanent" or "panic"
	calls map[string]int
}

func (f *failing) RoomEvent(_ context.Context, _ *inbound.Work, ev inbound.RoomEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[string(ev.EventID)]++
	switch f.fail[string(ev.EventID)] {
	case "error":
		return errors.New("handler refuses " + string(ev.EventID))
	case "permanent":
		return fmt.Errorf("%w: cannot handle %s", inbound.ErrPermanent, ev.EventID)
	case "panic":
		panic("handler panics on " + string(ev.EventID))
	}
	return nil
}

func roomEvent(room string, i int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"type": "m.room.message", "room_id": %q, "event_id": "$%s-%d", "sender": "@a:hs", "content": {"n": %d}}`,
		room, room[1:], i, i))
}

// enqueue puts events 0..n-1 of each room on its queue, interleaved
// across rooms as a homeserver would send them.
func enqueue(t testing.TB, db *database.DB, rooms []string, n int) {
	t.Helper()
	ctx := context.Background()
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		p := database.NewProducer(tx)
		for i := range n {
			for _, room := range rooms {
				ev, err := inbound.ParseRoomEvent(roomEvent(room, i))
				if err != nil {
					return err
				}
				if _, err := p.AddItem(ctx, database.Item{Queue: inbound.RoomQueue(ev.RoomID), Kind: inbound.KindRoomEvent,
					RoomID: room, EventID: string(ev.EventID), Payload: ev.Raw}); err != nil {
					return err
				}
			}
		}
		return p.Flush(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func newTestWorker(t testing.TB, db *database.DB, h inbound.Handlers, metrics *Metrics) *Worker {
	return NewWorker(WorkerConfig{DB: db, Handlers: h, Metrics: metrics, Log: zerolog.New(zerolog.NewTestWriter(t)),
		BatchSize: 7, MaxAttempts: 3, RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond,
		ItemTimeout: 10 * time.Second})
}

// drain runs workers in parallel until no work is left (parked items
// aside) or the deadline passes.
func drain(t testing.TB, db *database.DB, w *Worker, workers int, deadline time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				did, err := w.Step(ctx)
				if err != nil && ctx.Err() == nil {
					t.Errorf("step: %v", err)
					return
				}
				if !did {
					b, err := database.ReadBacklog(ctx, db)
					if err == nil && b.Items == 0 {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("work not drained within %s", deadline)
	}
}

// recorded returns the event ids recorded per room, in the order their
// recording committed.
func recorded(t testing.TB, db *database.DB) map[string][]string {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT room_id, event_id FROM inbound_event ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var room, event string
	if _, err := pgx.ForEachRow(rows, []any{&room, &event}, func() error {
		out[room] = append(out[room], event)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWorkersApplyEachRoomInOrderExactlyOnce(t *testing.T) {
	db := testDB(t)
	rooms := make([]string, 12)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("!room%d:hs", i)
	}
	const n = 25
	enqueue(t, db, rooms, n)
	metrics := NewMetrics(prometheus.NewRegistry())
	drain(t, db, newTestWorker(t, db, Recorder{}.Handlers(), metrics), 4, time.Minute)
	got := recorded(t, db)
	for _, room := range rooms {
		events := got[room]
		if len(events) != n {
			t.Errorf("%s: %d events recorded, want %d", room, len(events), n)
			continue
		}
		for i, e := range events {
			if want := fmt.Sprintf("$%s-%d", room[1:], i); e != want {
				t.Errorf("%s: event %d is %s, want %s", room, i, e, want)
				break
			}
		}
	}
	if v := testutil.ToFloat64(metrics.ItemsProcessed.WithLabelValues(inbound.KindRoomEvent)); v != float64(n*len(rooms)) {
		t.Errorf("processed counter %v, want %d", v, n*len(rooms))
	}
}

// checkPoisoned checks what the poisoned room of failing's tests applied:
// everything but the three failing events, in order.
func checkPoisoned(t *testing.T, applied []string) {
	t.Helper()
	want := []string{"$bad:hs-0", "$bad:hs-1", "$bad:hs-3", "$bad:hs-4", "$bad:hs-6", "$bad:hs-8", "$bad:hs-9"}
	if fmt.Sprint(applied) != fmt.Sprint(want) {
		t.Errorf("poisoned room applied %v, want %v", applied, want)
	}
}

// parkedPoison checks that the three failing events of the poisoned room
// are parked, the retried one after max_attempts, and returns them.
func parkedPoison(t *testing.T, db *database.DB) []database.Item {
	t.Helper()
	parked, err := database.ParkedItems(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if len(parked) != 3 || parked[0].EventID != "$bad:hs-2" || parked[0].Attempts != 3 ||
		parked[1].EventID != "$bad:hs-5" || parked[2].EventID != "$bad:hs-7" {
		t.Fatalf("parked %+v", parked)
	}
	return parked
}

// TestPoisonedItemParksAndBlocksNothingElse fails three items of one room
// (a retried error, a permanent error, a panic): each is parked, the other
// rooms go on meanwhile, and the poisoned room's later items are applied
// after its parked ones.
func TestPoisonedItemParksAndBlocksNothingElse(t *testing.T) {
	db := testDB(t)
	rooms := []string{"!bad:hs", "!good1:hs", "!good2:hs"}
	enqueue(t, db, rooms, 10)
	f := &failing{calls: map[string]int{}, fail: map[string]string{
		"$bad:hs-2": "error", "$bad:hs-5": "permanent", "$bad:hs-7": "panic"}}
	h := Recorder{}.Handlers()
	h.Room = []inbound.RoomHandler{f, Recorder{}}
	metrics := NewMetrics(prometheus.NewRegistry())
	w := newTestWorker(t, db, h, metrics)

	// The good rooms finish while the bad one is still retrying item 2.
	drain(t, db, w, 2, time.Minute)
	got := recorded(t, db)
	for _, room := range rooms[1:] {
		if len(got[room]) != 10 {
			t.Errorf("%s: %d of 10 events applied", room, len(got[room]))
		}
	}
	checkPoisoned(t, got["!bad:hs"])
	if c := f.calls["$bad:hs-2"]; c != 3 {
		t.Errorf("retried item tried %d times, want max_attempts 3", c)
	}
	if c := f.calls["$bad:hs-5"]; c != 1 {
		t.Errorf("permanently failing item tried %d times, want 1", c)
	}
	parked := parkedPoison(t, db)
	if v := testutil.ToFloat64(metrics.ItemsParked.WithLabelValues(inbound.KindRoomEvent)); v != 3 {
		t.Errorf("parked counter %v, want 3", v)
	}
	// The operator fixes the cause and retries one: it is applied.
	delete(f.fail, "$bad:hs-2")
	if _, err := database.RetryParked(context.Background(), db, parked[0].Seq); err != nil {
		t.Fatal(err)
	}
	drain(t, db, w, 1, time.Minute)
	if got := recorded(t, db)["!bad:hs"]; len(got) != 8 || got[7] != "$bad:hs-2" {
		t.Errorf("after retry the room has %v", got)
	}
}

func TestBadPayloadFromTheDatabaseIsParked(t *testing.T) {
	db := testDB(t)
	ctx := context.Background()
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		p := database.NewProducer(tx)
		for _, it := range []database.Item{
			{Queue: "in:room:!x:hs", Kind: inbound.KindRoomEvent, Payload: []byte(`{"type": "t\u0000"}`)},
			{Queue: "in:room:!x:hs", Kind: "no_such_kind", Payload: []byte(`{}`)},
			{Queue: "in:room:!x:hs", Kind: inbound.KindKeyCounts, Payload: []byte(`{"user_id": "@a:hs", "device_id": "D", "one_time_keys": {"k": -1}}`)},
		} {
			if _, err := p.AddItem(ctx, it); err != nil {
				return err
			}
		}
		return p.Flush(ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, db, newTestWorker(t, db, Recorder{}.Handlers(), NewMetrics(prometheus.NewRegistry())), 1, time.Minute)
	parked, err := database.ParkedItems(ctx, db)
	if err != nil || len(parked) != 3 {
		t.Fatalf("parked %d items (%v), want all 3 at once", len(parked), err)
	}
	for _, p := range parked {
		if p.Attempts != 1 {
			t.Errorf("item %s parked after %d attempts, want 1 (permanent)", p.Kind, p.Attempts)
		}
	}
}

type countingTimer struct{ runs int }

func (c *countingTimer) Timer(context.Context, *inbound.Work, database.Timer) (time.Time, error) {
	c.runs++
	if c.runs == 1 {
		return time.Time{}, errors.New("first run fails")
	}
	return time.Time{}, nil
}

func TestTimerRetriesThenFinishes(t *testing.T) {
	db := testDB(t)
	ctx := context.Background()
	if err := database.ScheduleTimer(ctx, db, database.Timer{Kind: "count", Key: "k", DueAt: time.Now()}, database.Replace); err != nil {
		t.Fatal(err)
	}
	c := &countingTimer{}
	metrics := NewMetrics(prometheus.NewRegistry())
	timers := NewTimers(db, map[string]inbound.TimerHandler{"count": c}, metrics, time.Minute,
		func(int) time.Duration { return 10 * time.Millisecond }, zerolog.New(zerolog.NewTestWriter(t)))
	deadline := time.Now().Add(10 * time.Second)
	for c.runs < 2 && time.Now().Before(deadline) {
		if _, err := timers.Step(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM timer`).Scan(&n); err != nil || n != 0 || c.runs != 2 {
		t.Fatalf("%d runs, %d timers left (%v); want 2 runs and the timer gone", c.runs, n, err)
	}
	if v := testutil.ToFloat64(metrics.TimersFailed.WithLabelValues("count")); v != 1 {
		t.Errorf("timer failures %v, want 1", v)
	}
}

// BenchmarkWorkers measures items applied per second by 1, 2 and 4
// workers over 100 rooms, with the recording handlers (one insert per
// event) against the real PostgreSQL:
//
//	./scripts/with-env go test -run '^$' -bench Workers -count 5 ./appservice/
func BenchmarkWorkers(b *testing.B) {
	rooms := make([]string, 100)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("!bench%d:hs", i)
	}
	const perRoom = 20
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			db := testDB(b)
			w := NewWorker(WorkerConfig{DB: db, Handlers: Recorder{}.Handlers(), Metrics: NewMetrics(prometheus.NewRegistry()),
				Log: zerolog.Nop(), BatchSize: 32, MaxAttempts: 5, RetryBackoff: time.Second, MaxRetryBackoff: time.Second,
				ItemTimeout: time.Minute})
			var total time.Duration
			for b.Loop() {
				b.StopTimer()
				enqueue(b, db, rooms, perRoom)
				b.StartTimer()
				start := time.Now()
				drain(b, db, w, workers, 10*time.Minute)
				total += time.Since(start)
			}
			b.ReportMetric(float64(b.N*len(rooms)*perRoom)/total.Seconds(), "items/s")
		})
	}
}

// runFailing is failing that also takes runs (inbound.RoomRunHandler): a
// run fails as its first failing event would, and an event marked
// "decline" declines the runs it is in but is applied alone.
type runFailing struct {
	failing
	runs int
}

func (f *runFailing) Runnable(inbound.RoomEvent) bool { return true }

func (f *runFailing) RoomEvents(ctx context.Context, w *inbound.Work, items []database.Item, evs []inbound.RoomEvent) error {
	f.mu.Lock()
	f.runs++
	fail := f.fail
	f.mu.Unlock()
	for _, ev := range evs {
		if fail[string(ev.EventID)] == "decline" {
			return inbound.ErrNoRun
		}
		if fail[string(ev.EventID)] != "" {
			return f.RoomEvent(ctx, w, ev)
		}
	}
	return nil
}

// TestRunsFallBackOneByOne: rooms whose events are taken as runs decide
// every event as one by one would: a run that a handler declines, fails
// or panics in is rolled back, and its events are applied alone, so the
// failing ones are parked exactly as without runs and the others are
// applied once, in order.
func TestRunsFallBackOneByOne(t *testing.T) {
	db := testDB(t)
	rooms := []string{"!bad:hs", "!good1:hs", "!good2:hs", "!declined:hs"}
	enqueue(t, db, rooms, 10)
	f := &runFailing{failing: failing{calls: map[string]int{}, fail: map[string]string{
		"$bad:hs-2": "error", "$bad:hs-5": "permanent", "$bad:hs-7": "panic", "$declined:hs-4": "decline"}}}
	h := Recorder{}.Handlers()
	h.Room = []inbound.RoomHandler{f, Recorder{}}
	metrics := NewMetrics(prometheus.NewRegistry())
	drain(t, db, newTestWorker(t, db, h, metrics), 2, time.Minute)
	got := recorded(t, db)
	all := func(room string) []string {
		var ids []string
		for i := range 10 {
			ids = append(ids, fmt.Sprintf("$%s-%d", room[1:], i))
		}
		return ids
	}
	for _, room := range rooms[1:] {
		if fmt.Sprint(got[room]) != fmt.Sprint(all(room)) {
			t.Errorf("%s applied %v, want %v", room, got[room], all(room))
		}
	}
	checkPoisoned(t, got["!bad:hs"])
	parkedPoison(t, db)
	applied := testutil.ToFloat64(metrics.RunEvents.WithLabelValues("applied"))
	singly := testutil.ToFloat64(metrics.RunEvents.WithLabelValues("one_by_one"))
	if f.runs == 0 || applied < 20 || singly == 0 {
		t.Errorf("%d runs, %v events applied in runs and %v one by one: want runs for the good rooms and none kept for the failing ones",
			f.runs, applied, singly)
	}
	if v := testutil.ToFloat64(metrics.ItemsProcessed.WithLabelValues(inbound.KindRoomEvent)); v != 37 {
		t.Errorf("processed counter %v, want 37", v)
	}
}
