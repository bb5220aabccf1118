package botapi

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/bots"
)

// hub keeps one feed per bot that has an event stream or a webhook in
// this instance. A feed copies new entries of the bot's puppets' logs
// into the bot's event log (fan-in) and tells its subscribers how far the
// log reaches, so that however many streams a bot has open, one goroutine
// per bot does the copying.
type hub struct {
	events  *eventLog
	reg     *bots.Registry
	groups  Groups
	metrics *Metrics
	poll    time.Duration
	log     zerolog.Logger

	mu    sync.Mutex
	feeds map[string]*feed
}

func newHub(events *eventLog, reg *bots.Registry, g Groups, m *Metrics, poll time.Duration, log zerolog.Logger) *hub {
	return &hub{events: events, reg: reg, groups: g, metrics: m, poll: poll, log: log, feeds: map[string]*feed{}}
}

// feed is one bot's fan-in loop and the position its subscribers wait on.
type feed struct {
	bot    string
	refs   int
	cancel context.CancelFunc
	// kick: a delivery to one of the bot's puppets; refresh: its set of
	// puppets changed.
	kick    chan struct{}
	refresh chan struct{}

	mu      sync.Mutex
	last    int64
	ready   bool
	changed chan struct{}
}

// subscribe returns the bot's feed, starting it if it is not running;
// the returned function ends the subscription.
func (h *hub) subscribe(bot string) (*feed, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.feeds[bot]
	if f == nil {
		ctx, cancel := context.WithCancel(context.Background())
		f = &feed{bot: bot, cancel: cancel, kick: make(chan struct{}, 1), refresh: make(chan struct{}, 1),
			changed: make(chan struct{})}
		h.feeds[bot] = f
		go h.run(ctx, f)
	}
	f.refs++
	var once sync.Once
	return f, func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			f.refs--
			if f.refs == 0 {
				f.cancel()
				delete(h.feeds, bot)
			}
		})
	}
}

// poke makes the bot's feed (if it runs here) look for new events now:
// its puppets changed.
func (h *hub) poke(bot string) {
	h.mu.Lock()
	f := h.feeds[bot]
	h.mu.Unlock()
	if f != nil {
		signal(f.refresh)
	}
}

func (f *feed) poke() { signal(f.kick) }

// signal sends on a channel of capacity 1 unless a signal is pending.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// state returns how far the bot's log reaches (ok is false until the
// feed's first fan-in) and a channel closed when that changes.
func (f *feed) state() (last int64, ok bool, changed <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.ready, f.changed
}

func (f *feed) advance(last int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ready || last > f.last {
		f.last, f.ready = last, true
		close(f.changed)
		f.changed = make(chan struct{})
	}
}

// run is a feed's loop: fan in, publish, wait for a delivery to one of
// the bot's puppets in this process, a poke, or the poll interval (for
// deliveries made by other instances).
func (h *hub) run(ctx context.Context, f *feed) {
	watching := map[id.UserID]context.CancelFunc{}
	defer func() {
		for _, cancel := range watching {
			cancel()
		}
	}()
	ticker := time.NewTicker(h.poll)
	defer ticker.Stop()
	backoff := h.poll
	stale := true // the set of puppets watched must be read again
	for {
		var err error
		if stale {
			err = h.watch(ctx, f, watching)
			stale = err != nil
		}
		if err == nil {
			var n int
			var last int64
			n, last, err = h.events.fanIn(ctx, f.bot)
			if err == nil {
				h.metrics.FanIn.Add(float64(n))
				f.advance(last)
				backoff = h.poll
				if n == h.events.batch {
					continue // more to copy
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			h.log.Error().Err(err).Str("bot", f.bot).Dur("retry_in", backoff).Msg("Bot event log fan-in failed")
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		case <-f.refresh:
			stale = true
		case <-ticker.C:
			stale = true
		}
	}
}

// watch makes sure a watcher runs for each of the bot's puppets: it pokes
// the feed at each delivery to the puppet in this process. Each watcher
// registers its first wait before watch returns, so a delivery committed
// after the fan-in that follows cannot go unnoticed.
func (h *hub) watch(ctx context.Context, f *feed, watching map[id.UserID]context.CancelFunc) error {
	puppets, err := h.reg.Puppets(ctx, f.bot)
	if err != nil {
		return err
	}
	for _, p := range puppets {
		if watching[p] != nil {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		watching[p] = cancel
		ch := h.groups.Wait(p)
		go func() {
			for {
				select {
				case <-wctx.Done():
					return
				case <-ch:
				}
				ch = h.groups.Wait(p)
				f.poke()
			}
		}()
	}
	return nil
}
