package runloop

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestLoopDrainsWorkThenSleepsUntilWoken(t *testing.T) {
	var work atomic.Int32
	work.Store(3)
	var steps atomic.Int32
	l := New(func(context.Context) (bool, error) {
		steps.Add(1)
		if work.Load() > 0 {
			work.Add(-1)
			return true, nil
		}
		return false, nil
	}, time.Hour, time.Millisecond, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	waitFor(t, func() bool { return steps.Load() == 4 })
	time.Sleep(20 * time.Millisecond)
	if n := steps.Load(); n != 4 {
		t.Fatalf("%d steps without a wake-up, want 4 (3 with work, 1 idle)", n)
	}
	work.Store(1)
	l.Wake()
	waitFor(t, func() bool { return steps.Load() == 6 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLoopBacksOffAndRecovers(t *testing.T) {
	var calls []time.Time
	fail := 3
	ctx, cancel := context.WithCancel(context.Background())
	var delays []time.Duration
	l := New(func(context.Context) (bool, error) {
		calls = append(calls, time.Now())
		if fail > 0 {
			fail--
			return false, errors.New("boom")
		}
		cancel()
		return true, nil
	}, time.Hour, 5*time.Millisecond, 12*time.Millisecond)
	l.OnError = func(_ error, d time.Duration) { delays = append(delays, d) }
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 12 * time.Millisecond}
	if len(delays) != len(want) {
		t.Fatalf("delays %v, want %v", delays, want)
	}
	for i := range want {
		if delays[i] != want[i] {
			t.Fatalf("delays %v, want %v", delays, want)
		}
	}
	if len(calls) != 4 {
		t.Fatalf("%d calls, want 4", len(calls))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}
