package matrix

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
)

// Puppets registers users of the service's namespace, creates their
// devices and hands out clients that act as one (user, device).
type Puppets struct {
	homeserver string
	asToken    string
	domain     string
	bot        string
	prefix     string
	asID       string
	db         *database.DB
	log        zerolog.Logger
	media      MediaConfig
	metrics    *Metrics

	mu       sync.Mutex
	clients  map[deviceKey]*mautrix.Client
	botReady atomic.Bool
}

type deviceKey struct {
	user   id.UserID
	device id.DeviceID
}

// PuppetsConfig holds what Puppets needs.
type PuppetsConfig struct {
	HomeserverURL string
	Domain        string
	ASToken       string
	BotLocalpart  string
	UserPrefix    string
	// AppServiceID is the registration's id: RegisterBot pings the
	// homeserver under it once the bot is registered (see ping).
	AppServiceID string
	DB           *database.DB
	Log          zerolog.Logger
	// Media bounds attachment downloads (DownloadAttachment).
	Media MediaConfig
	// Metrics, if set, counts attachment downloads by result.
	Metrics *Metrics
}

// NewPuppets returns a Puppets for one appservice registration.
func NewPuppets(cfg PuppetsConfig) *Puppets {
	return &Puppets{homeserver: cfg.HomeserverURL, asToken: cfg.ASToken, domain: cfg.Domain,
		bot: cfg.BotLocalpart, prefix: cfg.UserPrefix, asID: cfg.AppServiceID, db: cfg.DB, log: cfg.Log,
		media: cfg.Media.withDefaults(), metrics: cfg.Metrics,
		clients: map[deviceKey]*mautrix.Client{}}
}

// BotID is the appservice's own user (sender_localpart).
func (p *Puppets) BotID() id.UserID { return id.NewUserID(p.bot, p.domain) }

// PuppetID is the user ID of the puppet with the given name: the
// namespace prefix is added here so callers cannot step outside it.
func (p *Puppets) PuppetID(name string) id.UserID {
	return id.NewUserID(p.prefix+name, p.domain)
}

// UserIDPrefix returns how every puppet's user id starts ("@" and the
// namespace's prefix), for a database query to narrow by before Owns.
func (p *Puppets) UserIDPrefix() string { return "@" + p.prefix }

// Owns reports whether userID is in the service's namespace.
func (p *Puppets) Owns(userID id.UserID) bool {
	local, server, err := userID.Parse()
	return err == nil && server == p.domain && (local == p.bot || strings.HasPrefix(local, p.prefix))
}

func (p *Puppets) newClient(userID id.UserID) (*mautrix.Client, error) {
	cli, err := mautrix.NewClient(p.homeserver, userID, p.asToken)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", userID, err)
	}
	cli.SetAppServiceUserID = true
	cli.Log = p.log.With().Str("as_user", userID.String()).Logger()
	return cli, nil
}

// Register creates userID on the homeserver if it does not exist yet and
// remembers it. It is idempotent.
func (p *Puppets) Register(ctx context.Context, userID id.UserID) error {
	if !p.Owns(userID) {
		return fmt.Errorf("register %s: not in the appservice namespace", userID)
	}
	local, _, _ := userID.Parse()
	cli, err := p.newClient(p.BotID())
	if err != nil {
		return err
	}
	// Registering as the appservice must not name a user_id to act as:
	// the user does not exist yet.
	cli.SetAppServiceUserID = false
	req := &mautrix.ReqRegister[any]{Username: local, Type: mautrix.AuthTypeAppservice, InhibitLogin: true}
	_, err = cli.MakeRequest(ctx, http.MethodPost, cli.BuildClientURL("v3", "register"), req, nil)
	if err != nil && !errors.Is(err, mautrix.MUserInUse) {
		return fmt.Errorf("register %s: %w", userID, err)
	}
	if err := database.SavePuppet(ctx, p.db, userID.String()); err != nil {
		return err
	}
	return nil
}

// CreateDevice gives userID the device deviceID through MSC4190 and
// remembers it. It is idempotent: the homeserver answers 200 for a
// device that exists and 201 for a new one.
func (p *Puppets) CreateDevice(ctx context.Context, userID id.UserID, deviceID id.DeviceID, displayName string) error {
	if deviceID == "" {
		return fmt.Errorf("create device for %s: empty device ID", userID)
	}
	cli, err := p.newClient(userID)
	if err != nil {
		return err
	}
	if err := cli.CreateDeviceMSC4190(ctx, deviceID, displayName); err != nil {
		return fmt.Errorf("create device %s for %s: %w", deviceID, userID, err)
	}
	if err := database.SavePuppetDevice(ctx, p.db, userID.String(), deviceID.String(), displayName); err != nil {
		return err
	}
	return nil
}

// Client returns a client whose requests act as userID and, if deviceID
// is not empty, as that device (DESIGN 7, masquerading). Clients are
// cached per (user, device).
func (p *Puppets) Client(userID id.UserID, deviceID id.DeviceID) (*mautrix.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := deviceKey{userID, deviceID}
	if cli := p.clients[key]; cli != nil {
		return cli, nil
	}
	cli, err := p.newClient(userID)
	if err != nil {
		return nil, err
	}
	if deviceID != "" {
		cli.DeviceID = deviceID
		cli.SetAppServiceDeviceID = true
	}
	p.clients[key] = cli
	return cli, nil
}

// RegisterBot registers the appservice's own user, retrying until the
// homeserver accepts it (in a compose stack the homeserver may come up
// after us) or ctx ends. BotReady reports success. Then it pings the
// homeserver (ping).
func (p *Puppets) RegisterBot(ctx context.Context) error {
	delay := time.Second
	for {
		err := p.Register(ctx, p.BotID())
		if err == nil {
			p.botReady.Store(true)
			p.log.Info().Stringer("bot", p.BotID()).Msg("Bot user registered")
			p.ping(ctx)
			return nil
		}
		p.log.Warn().Err(err).Dur("retry_in", delay).Msg("Registering the bot user failed")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// ping asks the homeserver to ping us (POST /_matrix/client/v1/appservice/
// {id}/ping, spec v1.7). Besides checking the link both ways, a successful
// ping makes Synapse retry at once the transactions it holds for us: after
// we were down it marks the appservice down and retries on a backoff that
// doubles up to 512s (synapse/appservice/scheduler.py _Recoverer), so a
// restarted service would otherwise get the events of its downtime, and
// every new one, only when that timer fires. A homeserver without the
// endpoint (M_UNRECOGNIZED) is left alone; other failures are retried a
// few times, since the homeserver's request may race our start.
func (p *Puppets) ping(ctx context.Context) {
	if p.asID == "" {
		return
	}
	cli, err := p.newClient(p.BotID())
	if err != nil {
		p.log.Warn().Err(err).Msg("Homeserver ping: no client")
		return
	}
	delay := time.Second
	for attempt := 1; ; attempt++ {
		resp, err := cli.AppservicePing(ctx, p.asID, "mlsas.start."+strconv.FormatInt(time.Now().UnixNano(), 36))
		switch {
		case err == nil:
			var took int64
			if resp != nil {
				took = resp.DurationMS
			}
			p.log.Info().Int64("duration_ms", took).Msg("Homeserver ping answered")
			return
		case errors.Is(err, mautrix.MUnrecognized):
			p.log.Info().Msg("Homeserver does not support appservice ping")
			return
		case attempt >= 5 || ctx.Err() != nil:
			p.log.Warn().Err(err).Msg("Homeserver ping failed; the homeserver retries its transactions on its own schedule")
			return
		}
		p.log.Debug().Err(err).Int("attempt", attempt).Msg("Homeserver ping failed; trying again")
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// BotReady reports whether the bot user is registered.
func (p *Puppets) BotReady() bool { return p.botReady.Load() }
