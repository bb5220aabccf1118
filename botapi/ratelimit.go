package botapi

import (
	"math"
	"sync"
	"time"
)

// limiter is a token bucket per bot: rate requests per second on
// average, burst at once. It is per instance: with n instances behind a
// load balancer a bot may make up to n times as many.
type limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int, now func() time.Time) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// allow takes a token of bot's bucket, or says how long until there is one.
func (l *limiter) allow(bot string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[bot]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[bot] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}
