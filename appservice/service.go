package appservice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/internal/runloop"
)

// ServiceConfig holds what a Service runs.
type ServiceConfig struct {
	Config   *config.Config
	DB       *database.DB
	Log      zerolog.Logger
	Registry *prometheus.Registry
	Metrics  *Metrics
	Handlers inbound.Handlers
	// Background functions run beside processing until the service stops
	// (the outbox sender, the bot's registration).
	Background []func(context.Context) error
	// ReadyChecks are further conditions of readiness, by name.
	ReadyChecks map[string]func() bool
}

// Service is the running appservice: intake, health and metrics over
// HTTP, the splitter, the workers and the timers, and whatever background
// work the caller adds.
type Service struct {
	cfg      ServiceConfig
	intake   *Intake
	splitter *runloop.Loop
	workers  []*runloop.Loop
	timers   *runloop.Loop
}

// NewService wires the parts of the service over an open, migrated database.
func NewService(sc ServiceConfig) *Service {
	cfg := sc.Config
	log := sc.Log
	timerHandlers := map[string]inbound.TimerHandler{}
	for k, h := range sc.Handlers.Timers {
		timerHandlers[k] = h
	}
	if timerHandlers[RetentionTimer] == nil {
		timerHandlers[RetentionTimer] = &Retention{DB: sc.DB, Keep: cfg.Processing.Retention.D(),
			Batch: cfg.Processing.RetentionBatch, Metrics: sc.Metrics, Log: log.With().Str("component", "retention").Logger()}
	}
	sc.Handlers.Timers = timerHandlers
	s := &Service{cfg: sc}
	p := cfg.Processing
	splitter := NewSplitter(sc.DB, sc.Metrics, p.MaxAttempts, log.With().Str("component", "splitter").Logger())
	s.splitter = s.loop("splitter", splitter.Step, time.Minute)
	splitter.Split = s.wakeWorkers
	// Parsed transactions wait for the splitter; their bodies are bounded
	// by what the intake may hold in flight, at most 4 MiB: when the
	// splitter keeps up, the handoff holds a transaction or two.
	splitter.Handoff = NewHandoff(int(min(cfg.AppService.MaxInFlightBytes, handoffBudget)))
	worker := NewWorker(WorkerConfig{DB: sc.DB, Handlers: sc.Handlers, Metrics: sc.Metrics,
		Log: log.With().Str("component", "worker").Logger(), BatchSize: p.BatchSize, MaxAttempts: p.MaxAttempts,
		RetryBackoff: p.RetryBackoff.D(), MaxRetryBackoff: p.MaxRetryBackoff.D(), ItemTimeout: p.ItemTimeout.D()})
	for range p.Workers {
		s.workers = append(s.workers, s.loop("worker", worker.Step, time.Minute))
	}
	timers := NewTimers(sc.DB, sc.Handlers.Timers, sc.Metrics, p.ItemTimeout.D(), worker.backoff,
		log.With().Str("component", "timers").Logger())
	s.timers = s.loop("timers", timers.Step, time.Minute)
	s.intake = NewIntake(IntakeConfig{HSToken: cfg.AppService.HSToken, MaxBodyBytes: cfg.AppService.MaxBodyBytes,
		MaxInFlightBytes: cfg.AppService.MaxInFlightBytes, DB: sc.DB, Stored: s.splitter.Wake, Handoff: splitter.Handoff,
		Metrics: sc.Metrics, Log: log.With().Str("component", "intake").Logger()})
	return s
}

func (s *Service) loop(name string, step runloop.Step, maxBackoff time.Duration) *runloop.Loop {
	l := runloop.New(step, s.cfg.Config.Processing.Poll.D(), 100*time.Millisecond, maxBackoff)
	log := s.cfg.Log.With().Str("component", name).Logger()
	l.OnError = func(err error, retry time.Duration) {
		log.Error().Err(err).Dur("retry_in", retry).Msg("Background step failed")
	}
	return l
}

// Wake makes the workers and the timers look for work at once: for work
// added outside a work item (an API call that enqueued an item or
// scheduled a timer).
func (s *Service) Wake() {
	s.wakeWorkers()
	s.timers.Wake()
}

func (s *Service) wakeWorkers() {
	for _, w := range s.workers {
		w.Wake()
	}
}

// Handler serves the appservice API, health checks and, unless they have
// their own address, metrics.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	s.intake.Register(mux)
	mux.HandleFunc("GET /_matrix/mau/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("GET /_matrix/mau/ready", s.ready)
	if s.cfg.Config.AppService.MetricsAddress == "" {
		mux.Handle("GET /metrics", s.metricsHandler())
	}
	return mux
}

func (s *Service) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})
}

// ready answers 503 while the database is unreachable, the oldest
// unfinished inbound work is older than processing.ready_backlog, or a
// ready check fails; the body says which.
func (s *Service) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]any{}
	ok := true
	b, err := database.ReadBacklog(ctx, s.cfg.DB)
	if err != nil {
		status["database"] = false
		ok = false
	} else {
		status["database"] = true
		age := b.Oldest(time.Now())
		status["backlog_seconds"] = age.Seconds()
		status["parked_items"] = b.Parked
		if age > s.cfg.Config.Processing.ReadyBacklog.D() {
			status["backlog"] = false
			ok = false
		}
	}
	for name, check := range s.cfg.ReadyChecks {
		good := check()
		status[name] = good
		ok = ok && good
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, status)
}

// sampleBacklog keeps the backlog gauges current.
func (s *Service) sampleBacklog(ctx context.Context) error {
	m := s.cfg.Metrics
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := database.ReadBacklog(qctx, s.cfg.DB)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.BacklogReadError.Inc()
		} else {
			now := time.Now()
			m.QueueItems.Set(float64(b.Items))
			m.QueueOldestAge.Set(b.Oldest(now).Seconds())
			m.QueuesBusy.Set(float64(b.QueuesWithItems))
			m.ParkedItems.Set(float64(b.Parked))
			m.UnsplitTxns.Set(float64(b.Transactions))
			m.OutboxPending.Set(float64(b.Outgoing))
			if b.OldestOutgoing.IsZero() {
				m.OutboxOldestAge.Set(0)
			} else {
				m.OutboxOldestAge.Set(now.Sub(b.OldestOutgoing).Seconds())
			}
			m.TimersDue.Set(float64(b.Timers))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Run listens and processes until ctx is done, then stops the HTTP
// server, waiting at most appservice.shutdown_grace for requests in
// flight. A transaction whose storing did not finish is never
// acknowledged: the homeserver sends it again.
func (s *Service) Run(ctx context.Context) error {
	cfg := s.cfg.Config
	addr := net.JoinHostPort(cfg.AppService.Hostname, strconv.Itoa(cfg.AppService.Port))
	servers := []struct {
		addr, key string
		handler   http.Handler
	}{{addr, "appservice.port", s.Handler()}}
	if cfg.AppService.MetricsAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", s.metricsHandler())
		if cfg.AppService.Pprof {
			// Operators profile a running service here (go tool pprof
			// http://<metrics_address>/debug/pprof/profile).
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		}
		servers = append(servers, struct {
			addr, key string
			handler   http.Handler
		}{cfg.AppService.MetricsAddress, "appservice.metrics_address", mux})
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, sv := range servers {
		ln, err := net.Listen("tcp", sv.addr)
		if err != nil {
			return fmt.Errorf("%s: listen on %s: %w", sv.key, sv.addr, err)
		}
		srv := &http.Server{Handler: sv.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
			WriteTimeout: cfg.AppService.WriteTimeout.D(), IdleTimeout: 2 * time.Minute}
		s.cfg.Log.Info().Str("address", sv.addr).Str("key", sv.key).Msg("Listening")
		g.Go(func() error {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("serve %s: %w", sv.addr, err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), cfg.AppService.ShutdownGrace.D())
			defer cancel()
			if err := srv.Shutdown(shutdownCtx); err != nil {
				srv.Close()
			}
			return nil
		})
	}
	if err := ScheduleRetention(ctx, s.cfg.DB); err != nil {
		s.cfg.Log.Error().Err(err).Msg("Scheduling retention failed; it is tried again at the next start")
	}
	g.Go(func() error { return s.splitter.Run(gctx) })
	for _, w := range s.workers {
		g.Go(func() error { return w.Run(gctx) })
	}
	g.Go(func() error { return s.timers.Run(gctx) })
	g.Go(func() error { return s.sampleBacklog(gctx) })
	for _, bg := range s.cfg.Background {
		g.Go(func() error { return bg(gctx) })
	}
	return g.Wait()
}
