package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/appservice"
	"github.com/mls-appservice/mls-appservice/botapi"
	"github.com/mls-appservice/mls-appservice/bots"
	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/csapi"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/groups"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
	"github.com/mls-appservice/mls-appservice/matrix"
	"github.com/mls-appservice/mls-appservice/seal"
)

// components are the service's parts, wired from the configuration. The
// end-to-end tests assemble them too, as one more instance over the
// service's database, to drive its Go API.
type components struct {
	puppets  *matrix.Puppets
	keys     *keys.Manager
	groups   *groups.Service
	sender   *matrix.Sender
	handlers inbound.Handlers
	wake     []func()
	bots     *bots.Registry
	botapi   *botapi.Server
	csapi    *csapi.Server
}

// assemble builds the components over an open, migrated database.
func assemble(cfg *config.Config, db *database.DB, reg prometheus.Registerer, log zerolog.Logger) (*components, error) {
	c := &components{}
	matrixMetrics := matrix.NewMetrics(reg)
	c.puppets = matrix.NewPuppets(matrix.PuppetsConfig{HomeserverURL: cfg.Homeserver.Address, Domain: cfg.Homeserver.Domain,
		ASToken: cfg.AppService.ASToken, BotLocalpart: cfg.AppService.BotUsername, UserPrefix: cfg.AppService.UserPrefix,
		AppServiceID: cfg.AppService.ID, DB: db, Log: log.With().Str("component", "puppets").Logger(), Metrics: matrixMetrics,
		Media: matrix.MediaConfig{MaxDownloadBytes: cfg.Media.MaxDownloadBytes, DownloadTimeout: cfg.Media.DownloadTimeout.D(),
			DownloadAttempts: cfg.Media.DownloadAttempts}})
	current, old, err := cfg.SealKeys()
	if err != nil {
		return nil, err
	}
	sealer, err := seal.NewSealer(current, old...)
	if err != nil {
		return nil, err
	}
	c.handlers = appservice.Recorder{}.Handlers()
	hooks := map[string]matrix.SentHook{}
	if c.keys, err = newKeys(cfg, db, sealer, c.puppets, reg, log, &c.handlers, hooks); err != nil {
		return nil, err
	}
	g := cfg.Groups
	c.groups, err = groups.New(groups.Config{DB: db, Sealer: sealer, Keys: c.keys, Puppets: c.puppets,
		Metrics: groups.NewMetrics(reg), Log: log.With().Str("component", "groups").Logger(), Domain: cfg.Homeserver.Domain,
		Grace: g.CommitGrace.D(), MaxJitter: g.CommitJitter.D(),
		Policy: epochs.Policy{MaxEpochs: g.MaxEpochs, MaxAge: g.MaxEpochAge.D(), Linger: g.EpochLinger.D()}, Wait: g.Wait.D(), MaxHistory: g.MaxHistory,
		Autojoin: groups.Autojoin(g.Autojoin), SendTimeout: g.SendTimeout.D(), DeviceTTL: g.DeviceTTL.D(),
		LateEvent: g.LateEvent.D(), StateCache: int(g.StateCacheBytes), OffloadThreshold: cfg.Media.OffloadThreshold, Wake: c.wakeAll,
		LogRetention: g.LogRetention.D(), LogBatch: cfg.Processing.RetentionBatch})
	if err != nil {
		return nil, fmt.Errorf("groups: %w", err)
	}
	c.groups.Handlers(&c.handlers)
	hooks[groups.HookName] = c.groups
	c.sender = matrix.NewSender(matrix.SenderConfig{DB: db, Puppets: c.puppets, Metrics: matrixMetrics,
		Log: log.With().Str("component", "sender").Logger(), Workers: cfg.Outbox.Workers,
		RequestTimeout: cfg.Outbox.RequestTimeout.D(), Hooks: hooks})
	c.wake = append(c.wake, c.sender.Wake)
	c.bots = bots.New(db)
	c.botapi = botapi.New(botapi.Config{Settings: cfg.BotAPI, DB: db, Registry: c.bots, Groups: c.groups, Sealer: sealer,
		Metrics: botapi.NewMetrics(reg), Log: log.With().Str("component", "botapi").Logger()})
	c.csapi, err = csapi.New(csapi.Config{Settings: cfg.CSAPI, HomeserverURL: cfg.Homeserver.Address,
		ASToken: cfg.AppService.ASToken, GroupsWait: g.Wait.D(), DB: db, Registry: c.bots, Groups: c.groups,
		Metrics: csapi.NewMetrics(reg), Log: log.With().Str("component", "csapi").Logger()})
	if err != nil {
		return nil, fmt.Errorf("csapi: %w", err)
	}
	return c, nil
}

func (c *components) wakeAll() {
	for _, w := range c.wake {
		w()
	}
}

// start runs what must run before the service takes work.
func (c *components) start(ctx context.Context) error {
	if err := c.keys.Start(ctx); err != nil {
		return err
	}
	return c.groups.Start(ctx)
}
