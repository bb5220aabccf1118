package csapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/bots"
	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/groups"
	"github.com/mls-appservice/mls-appservice/internal/httpstatus"
)

// Groups is what the façade needs of package groups (*groups.Service).
type Groups interface {
	Algorithm() string
	CreationContent(ctx context.Context, puppet id.UserID, device id.DeviceID) (map[string]any, id.DeviceID, error)
	WaitActive(ctx context.Context, room id.RoomID) bool
	MembershipIn(ctx context.Context, room id.RoomID, user id.UserID) (string, bool, error)
	Send(ctx context.Context, puppet id.UserID, device id.DeviceID, room id.RoomID, eventType string,
		content json.RawMessage, idempotencyKey string) (groups.SendResult, error)
	Delivery(ctx context.Context, puppet id.UserID, event id.EventID) (*groups.Delivered, error)
	Wait(puppet id.UserID) <-chan struct{}
}

var _ Groups = (*groups.Service)(nil)

// Registry is what the façade needs of package bots (*bots.Registry).
type Registry interface {
	AuthenticateAccess(ctx context.Context, token string) (bots.AccessToken, error)
	RevokeAccessToken(ctx context.Context, token string) error
}

var _ Registry = (*bots.Registry)(nil)

// Config holds what a Server needs.
type Config struct {
	Settings config.CSAPI
	// HomeserverURL is the homeserver's client-server API, ASToken the
	// appservice's token with which the façade masquerades as puppets.
	HomeserverURL string
	ASToken       string
	// GroupsWait is groups.wait: how long groups may take to decide about
	// a message; events older than it plus the hold are not waited for.
	GroupsWait time.Duration
	DB         *database.DB
	Registry   Registry
	Groups     Groups
	Metrics    *Metrics
	Log        zerolog.Logger
	// Client calls the homeserver (a client without a total timeout if
	// nil: /sync long-polls; every call has its context's deadline).
	Client *http.Client
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Server is the client-server façade.
type Server struct {
	cfg      Config
	log      zerolog.Logger
	upstream *url.URL
	mux      *http.ServeMux
	creates  *createCache
}

// New returns a Server over cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	u, err := url.Parse(strings.TrimRight(cfg.HomeserverURL, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("homeserver.address %q: not a URL", cfg.HomeserverURL)
	}
	s := &Server{cfg: cfg, log: cfg.Log, upstream: u, creates: newCreateCache(10000)}
	s.mux = http.NewServeMux()
	for _, rt := range s.routes() {
		s.mux.Handle(rt.pattern, s.wrap(rt))
	}
	s.mux.Handle("/", s.wrap(route{name: "passthrough", handle: s.passthrough}))
	return s, nil
}

// Handler serves the façade.
func (s *Server) Handler() http.Handler { return s.mux }

// access is who a request acts as: the puppet device its token stands
// for, and the token itself (for /logout).
type access struct {
	bots.AccessToken
	token string
}

// route is one endpoint the façade answers itself, or refuses.
type route struct {
	pattern string
	name    string
	// public routes need no access token.
	public bool
	handle func(w http.ResponseWriter, r *http.Request, a *access) error
}

// wrap puts a route's handler behind authentication, error answers, logs
// and metrics.
func (s *Server) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := s.cfg.Now()
		w := &httpstatus.Writer{ResponseWriter: rw}
		var a *access
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error().Str("route", rt.name).Interface("panic", p).Msg("Façade handler panicked")
				if w.Status == 0 {
					writeError(w, mxErr(http.StatusInternalServerError, errUnknown, "internal error"))
				}
			}
			code := w.Status
			if code == 0 {
				code = http.StatusOK
			}
			took := s.cfg.Now().Sub(start)
			s.cfg.Metrics.Requests.WithLabelValues(rt.name, strconv.Itoa(code)).Inc()
			s.cfg.Metrics.RequestSeconds.WithLabelValues(rt.name).Observe(took.Seconds())
			// The path, never the query: a query may hold the
			// access token.
			ev := s.log.Debug().Str("route", rt.name).Str("method", r.Method).Str("path", r.URL.Path).Int("status", code).Dur("took", took)
			if a != nil {
				ev = ev.Stringer("puppet", a.UserID)
			}
			ev.Msg("Façade request")
		}()
		err := func() error {
			if !rt.public {
				var err error
				if a, err = s.authenticate(r); err != nil {
					return err
				}
			}
			return rt.handle(w, r, a)
		}()
		if err == nil {
			return
		}
		e := classify(err)
		ev := s.log.Info()
		switch {
		case r.Context().Err() != nil:
			// The bot went away (a stopped bot's /sync long-poll):
			// nobody reads the answer, and nothing failed here.
			e = mxErr(statusClientClosed, errUnknown, "the client closed the request").with(err)
			ev = s.log.Debug()
		case e.status >= 500:
			ev = s.log.Error()
		}
		if a != nil {
			ev = ev.Stringer("puppet", a.UserID).Stringer("device", a.DeviceID)
		}
		ev.Str("route", rt.name).Str("method", r.Method).Int("status", e.status).Str("errcode", e.errcode).
			Err(err).Msg("Façade request failed")
		if w.Status == 0 {
			writeError(w, e)
		}
	})
}

// statusClientClosed is the status counted (never sent) for a request
// whose client went away before its answer, as nginx logs it.
const statusClientClosed = 499

// tokenOf returns the access token of a request: the Authorization
// header, or the deprecated access_token query parameter (older clients
// and media links still send it).
func tokenOf(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

// authenticate returns the puppet device a request's token stands for.
func (s *Server) authenticate(r *http.Request) (*access, error) {
	token := tokenOf(r)
	if token == "" {
		return nil, mxErr(http.StatusUnauthorized, errMissingToken, "missing access token (issue one with: mls-appservice bots token BOT PUPPET)")
	}
	a, err := s.cfg.Registry.AuthenticateAccess(r.Context(), token)
	if errors.Is(err, bots.ErrUnauthorized) {
		return nil, mxErr(http.StatusUnauthorized, errUnknownToken, "unknown or revoked access token")
	}
	if err != nil {
		return nil, err
	}
	return &access{AccessToken: a, token: token}, nil
}

// classify turns an error into an answer: the façade's own, or one made
// from an error of groups, the database or the homeserver.
func classify(err error) *matrixError {
	var e *matrixError
	if errors.As(err, &e) {
		return e
	}
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return mxErr(http.StatusRequestEntityTooLarge, errTooLarge, "request body over %d bytes", tooLarge.Limit).with(err)
	case errors.Is(err, groups.ErrNotPuppet):
		return mxErr(http.StatusForbidden, errForbidden, "not a puppet of this service").with(err)
	case errors.Is(err, groups.ErrNoDevice):
		return mxErr(http.StatusForbidden, errForbidden, "this device has no MLS identity").with(err)
	case errors.Is(err, context.DeadlineExceeded):
		return mxErr(http.StatusGatewayTimeout, errUnknown, "the request took too long; retry it (sends with the same transaction id)").with(err)
	case errors.As(err, &netErr):
		return mxErr(http.StatusBadGateway, errUnknown, "the homeserver could not be reached; retry later").with(err)
	}
	return mxErr(http.StatusInternalServerError, errUnknown, "internal error").with(err)
}

// Run serves the façade on csapi.hostname:csapi.port until ctx is done,
// and prunes old transaction ids.
func (s *Server) Run(ctx context.Context) error {
	addr := joinHostPort(s.cfg.Settings.Hostname, s.cfg.Settings.Port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("csapi.port: listen on %s: %w", addr, err)
	}
	// No WriteTimeout: /sync long-polls. Homeserver calls carry the
	// request's context, which ends when the bot goes away.
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	s.log.Info().Str("address", addr).Str("key", "csapi.port").Msg("Client-server façade listening")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve the client-server façade on %s: %w", addr, err)
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
	g.Go(func() error { s.pruneLoop(gctx); return nil })
	return g.Wait()
}

// pruneLoop deletes transaction ids older than a week, hourly.
func (s *Server) pruneLoop(ctx context.Context) {
	for {
		if _, err := s.cfg.DB.Exec(ctx, `DELETE FROM csapi_txn WHERE created_at < now() - interval '7 days'`); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("Pruning the façade's transaction ids failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
