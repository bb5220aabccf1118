package botapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/bots"
	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/groups"
	"github.com/mls-appservice/mls-appservice/internal/httpstatus"
	"github.com/mls-appservice/mls-appservice/seal"
)

// Groups is what the bot API needs of package groups (*groups.Service).
type Groups interface {
	PuppetID(name string) id.UserID
	CreatePuppet(ctx context.Context, name, displayName string, avatar id.ContentURIString, device id.DeviceID) (id.UserID, error)
	AddDevice(ctx context.Context, user id.UserID, device id.DeviceID, displayName string) error
	RemoveDevice(ctx context.Context, user id.UserID, device id.DeviceID) error
	Devices(ctx context.Context, user id.UserID) ([]id.DeviceID, error)
	CreateRoom(ctx context.Context, puppet id.UserID, device id.DeviceID, o groups.CreateRoomOptions) (id.RoomID, error)
	Invite(ctx context.Context, by id.UserID, room id.RoomID, user id.UserID) error
	Join(ctx context.Context, puppet id.UserID, room id.RoomID, via []string) error
	Leave(ctx context.Context, puppet id.UserID, room id.RoomID) error
	Kick(ctx context.Context, by id.UserID, room id.RoomID, user id.UserID, reason string) error
	Room(ctx context.Context, room id.RoomID) (*groups.RoomInfo, error)
	Memberships(ctx context.Context, user id.UserID) ([]groups.Membership, error)
	MembershipIn(ctx context.Context, room id.RoomID, user id.UserID) (string, bool, error)
	Send(ctx context.Context, puppet id.UserID, device id.DeviceID, room id.RoomID, eventType string,
		content json.RawMessage, idempotencyKey string) (groups.SendResult, error)
	Log(ctx context.Context, puppet id.UserID, after int64, limit int) ([]groups.Delivered, error)
	RoomLog(ctx context.Context, puppet id.UserID, room id.RoomID, before int64, limit int) ([]groups.Delivered, error)
	Wait(puppet id.UserID) <-chan struct{}
}

var _ Groups = (*groups.Service)(nil)

// Config holds what a Server needs.
type Config struct {
	Settings config.BotAPI
	DB       *database.DB
	Registry *bots.Registry
	Groups   Groups
	// Sealer seals webhook secrets.
	Sealer  *seal.Sealer
	Metrics *Metrics
	Log     zerolog.Logger
	// Client makes webhook deliveries (a client with the webhook timeout
	// that follows no redirects if nil).
	Client *http.Client
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Server is the bot API: its HTTP handlers, the event streams' feeds and
// the webhook dispatcher.
type Server struct {
	cfg     Config
	log     zerolog.Logger
	events  *eventLog
	hub     *hub
	limiter *limiter
	hooks   *dispatcher
	mux     *http.ServeMux
	routes  []route

	mu      sync.Mutex
	streams map[string]int
}

// New returns a Server over cfg.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Settings.WebhookTimeout.D(),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	s := &Server{cfg: cfg, log: cfg.Log, streams: map[string]int{},
		limiter: newLimiter(cfg.Settings.RateLimit, cfg.Settings.RateBurst, cfg.Now)}
	s.events = &eventLog{db: cfg.DB, groups: cfg.Groups, batch: 1000}
	s.hub = newHub(s.events, cfg.Registry, cfg.Groups, cfg.Metrics, cfg.Settings.Poll.D(), cfg.Log)
	s.hooks = newDispatcher(s)
	s.routes = s.table()
	s.mux = http.NewServeMux()
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.path, s.wrap(rt))
	}
	return s
}

// route is one operation of the API. The table (routes.go) is what the
// server serves and what the test compares with openapi.json.
type route struct {
	method, path string
	// public routes need no token.
	public bool
	// stream routes run for as long as the client stays.
	stream bool
	handle func(w http.ResponseWriter, r *http.Request, bot string) error
}

// Handler serves the API.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := s.mux.Handler(r); pattern != "" {
			s.mux.ServeHTTP(w, r)
			return
		}
		// Answer unknown routes in the API's error format, telling a
		// wrong method from an unknown path.
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, p := s.mux.Handler(r2); p != "" {
				allow = append(allow, m)
			}
		}
		e := apiErr(http.StatusNotFound, CodeNotFound, "", "no such route: %s %s (see /v1/openapi.json)", r.Method, r.URL.Path)
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			e = apiErr(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "", "%s is not allowed here; allowed: %s",
				r.Method, strings.Join(allow, ", "))
		}
		s.cfg.Metrics.Requests.WithLabelValues("unmatched", strconv.Itoa(e.Status)).Inc()
		writeError(w, e)
	})
}

// wrap puts a route's handler behind authentication, the rate limit,
// the request timeout, error answers, logs and metrics.
func (s *Server) wrap(rt route) http.Handler {
	name := rt.method + " " + rt.path
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := s.cfg.Now()
		w := &httpstatus.Writer{ResponseWriter: rw}
		bot := ""
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error().Str("route", name).Str("bot", bot).Interface("panic", p).Msg("Bot API handler panicked")
				if w.Status == 0 {
					writeError(w, apiErr(http.StatusInternalServerError, CodeInternal, "", "internal error"))
				}
			}
			code := w.Status
			if code == 0 {
				code = http.StatusOK
			}
			s.cfg.Metrics.Requests.WithLabelValues(name, strconv.Itoa(code)).Inc()
			if !rt.stream {
				s.cfg.Metrics.RequestSeconds.WithLabelValues(name).Observe(s.cfg.Now().Sub(start).Seconds())
			}
		}()
		err := func() error {
			if !rt.public {
				var err error
				if bot, err = s.authenticate(r); err != nil {
					return err
				}
				if ok, wait := s.limiter.allow(bot); !ok {
					e := apiErr(http.StatusTooManyRequests, CodeRateLimited, "", "rate limit of %v requests per second exceeded", s.cfg.Settings.RateLimit)
					e.RetryAfter = int(math.Ceil(wait.Seconds()))
					return e
				}
			}
			if !rt.stream {
				ctx, cancel := context.WithTimeout(r.Context(), s.cfg.Settings.RequestTimeout.D())
				defer cancel()
				r = r.WithContext(ctx)
				_ = http.NewResponseController(w).SetWriteDeadline(start.Add(s.cfg.Settings.RequestTimeout.D() + 5*time.Second))
			}
			return rt.handle(w, r, bot)
		}()
		if err == nil {
			return
		}
		e := classify(err, "")
		ev := s.log.Info()
		if e.Status >= 500 {
			ev = s.log.Error()
		}
		ev.Str("route", name).Str("bot", bot).Int("status", e.Status).Str("code", e.Code).Str("field", e.Field).
			Err(err).Msg("Bot API request failed")
		if w.Status == 0 {
			writeError(w, e)
		}
	})
}

// authenticate returns the bot whose token the request carries.
func (s *Server) authenticate(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return "", apiErr(http.StatusUnauthorized, CodeUnauthorized, "Authorization",
			"send the bot's token as Authorization: Bearer <token>")
	}
	bot, err := s.cfg.Registry.Authenticate(r.Context(), strings.TrimSpace(token))
	if errors.Is(err, bots.ErrUnauthorized) {
		return "", apiErr(http.StatusUnauthorized, CodeUnauthorized, "Authorization", "unknown or revoked token")
	}
	return bot, err
}

// Run serves the API on botapi.hostname:botapi.port and delivers
// webhooks until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	addr := net.JoinHostPort(s.cfg.Settings.Hostname, strconv.Itoa(s.cfg.Settings.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("botapi.port: listen on %s: %w", addr, err)
	}
	// No WriteTimeout: event streams stay open; other requests set their
	// own write deadline (wrap).
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 2 * time.Minute,
		IdleTimeout: 2 * time.Minute, BaseContext: func(net.Listener) context.Context { return ctx }}
	s.log.Info().Str("address", addr).Str("key", "botapi.port").Msg("Bot API listening")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve the bot API on %s: %w", addr, err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdownCtx); err != nil {
			srv.Close()
		}
		return nil
	})
	g.Go(func() error { return s.hooks.run(gctx) })
	return g.Wait()
}

// ownPuppet reads the {puppet} path value and checks that bot owns it.
func (s *Server) ownPuppet(r *http.Request, bot string) (id.UserID, error) {
	p, e := checkUserID("puppet", r.PathValue("puppet"))
	if e != nil {
		return "", e
	}
	if err := s.cfg.Registry.Check(r.Context(), bot, p); err != nil {
		return "", err
	}
	return p, nil
}

// openStream counts a bot's event streams, refusing one beyond
// botapi.max_streams; the returned function closes it.
func (s *Server) openStream(bot string) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[bot] >= s.cfg.Settings.MaxStreams {
		e := apiErr(http.StatusTooManyRequests, CodeTooManyStreams, "", "this bot has %d event streams open (botapi.max_streams)", s.streams[bot])
		e.RetryAfter = 5
		return nil, e
	}
	s.streams[bot]++
	s.cfg.Metrics.StreamClients.Inc()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.streams[bot]--
		if s.streams[bot] == 0 {
			delete(s.streams, bot)
		}
		s.cfg.Metrics.StreamClients.Dec()
	}, nil
}
