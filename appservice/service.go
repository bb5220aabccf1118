package appservice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
)

// Service is the running appservice: HTTP endpoints, processor and puppets.
type Service struct {
	cfg       *config.Config
	db        *database.DB
	log       zerolog.Logger
	registry  *prometheus.Registry
	Metrics   *Metrics
	Puppets   *Puppets
	Processor *Processor
	Sender    *Sender
	intake    *Intake
	botReady  atomic.Bool
}

// NewService wires the parts of the service over an open, migrated database.
func NewService(cfg *config.Config, db *database.DB, log zerolog.Logger) *Service {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := NewMetrics(reg)
	proc := NewProcessor(db, metrics, log.With().Str("component", "processor").Logger())
	s := &Service{
		cfg: cfg, db: db, log: log, registry: reg, Metrics: metrics, Processor: proc,
		Puppets: NewPuppets(PuppetsConfig{HomeserverURL: cfg.Homeserver.Address, Domain: cfg.Homeserver.Domain,
			ASToken: cfg.AppService.ASToken, BotLocalpart: cfg.AppService.BotUsername,
			UserPrefix: cfg.AppService.UserPrefix, DB: db, Log: log.With().Str("component", "puppets").Logger()}),
	}
	s.Sender = NewSender(db, s.Puppets, metrics, log.With().Str("component", "sender").Logger())
	s.intake = NewIntake(IntakeConfig{HSToken: cfg.AppService.HSToken, MaxBodyBytes: cfg.AppService.MaxBodyBytes,
		Store: db, Puppets: db, Stored: proc.Wake, Metrics: metrics,
		Log: log.With().Str("component", "intake").Logger()})
	return s
}

// Handler serves the appservice API, health checks and metrics.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	s.intake.Register(mux)
	mux.HandleFunc("GET /_matrix/mau/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("GET /_matrix/mau/ready", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	return mux
}

func (s *Service) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]bool{"database": s.db.Pool.Ping(ctx) == nil, "bot_registered": s.botReady.Load()}
	code := http.StatusOK
	for _, ok := range status {
		if !ok {
			code = http.StatusServiceUnavailable
		}
	}
	writeJSON(w, code, status)
}

// Run listens, registers the bot and processes transactions until ctx is
// done, then shuts the HTTP server down gracefully.
func (s *Service) Run(ctx context.Context) error {
	addr := net.JoinHostPort(s.cfg.AppService.Hostname, strconv.Itoa(s.cfg.AppService.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("appservice.port: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	s.log.Info().Str("address", addr).Msg("Listening for the homeserver")

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	g.Go(func() error { s.registerBot(gctx); return nil })
	g.Go(func() error { return s.Processor.Run(gctx) })
	g.Go(func() error { return s.Sender.Run(gctx) })
	return g.Wait()
}

// registerBot retries until the homeserver accepts the bot, since in a
// compose stack the homeserver may come up after us.
func (s *Service) registerBot(ctx context.Context) {
	delay := time.Second
	for {
		err := s.Puppets.Register(ctx, s.Puppets.BotID())
		if err == nil {
			s.botReady.Store(true)
			s.log.Info().Stringer("bot", s.Puppets.BotID()).Msg("Bot user registered")
			return
		}
		s.log.Warn().Err(err).Dur("retry_in", delay).Msg("Registering the bot user failed")
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}
