package runloop

import (
	"context"
	"time"
)

// Step does one unit of work. It reports whether there was work to do;
// an error means the work is still there and should be retried later.
type Step func(ctx context.Context) (did bool, err error)

// Loop runs a Step until its context ends. The zero value is not usable;
// use New.
type Loop struct {
	step Step
	wake chan struct{}
	// Poll bounds how long work that nobody announced (stored by another
	// instance, or left by a crash) waits.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the delay after a failed step; the
	// delay doubles on each consecutive failure.
	MinBackoff, MaxBackoff time.Duration
	// OnError, if set, is told about each failure and the delay before
	// the next try.
	OnError func(err error, retryIn time.Duration)
}

// New returns a loop over step with the given poll interval and backoff
// bounds.
func New(step Step, poll, minBackoff, maxBackoff time.Duration) *Loop {
	return &Loop{step: step, wake: make(chan struct{}, 1), Poll: poll, MinBackoff: minBackoff, MaxBackoff: maxBackoff}
}

// Wake makes a sleeping loop try its step now. It never blocks, and wakes
// sent while the loop is busy collapse into one.
func (l *Loop) Wake() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run steps until ctx is done and returns nil then. A failing step does
// not end the loop: the work is retried after a growing delay.
func (l *Loop) Run(ctx context.Context) error {
	var backoff time.Duration
	for {
		did, err := l.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var delay time.Duration
		switch {
		case err != nil:
			backoff = min(max(2*backoff, l.MinBackoff), l.MaxBackoff)
			delay = backoff
			if l.OnError != nil {
				l.OnError(err, delay)
			}
		case did:
			backoff = 0
			continue
		default:
			backoff = 0
			delay = l.Poll
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-l.wake:
			t.Stop()
		case <-t.C:
		}
	}
}
