package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/botapi"
	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/groups"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/internal/reseal"
	"github.com/mls-appservice/mls-appservice/keys"
	"github.com/mls-appservice/mls-appservice/matrix"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// generateEncryptionKey puts a new master key into the configuration if
// it has none (-g). An existing key is never replaced: every sealed
// secret depends on it (rotation is encryption.old_keys and keys reseal).
func generateEncryptionKey(cfg *config.Config, configPath string) error {
	if cfg.HasEncryptionKey() {
		return nil
	}
	k, err := seal.GenerateKey()
	if err != nil {
		return err
	}
	if err := config.SetEncryptionKey(configPath, k.Encode()); err != nil {
		return fmt.Errorf("write encryption.key into %s: %w", configPath, err)
	}
	fmt.Printf("Generated encryption.key (key id %s) in %s. Back it up: the service's secrets cannot be opened without it.\n", k.ID(), configPath)
	return nil
}

// newKeys makes the keys manager from the configuration; its handlers
// are added to handlers and its upload hook to hooks.
func newKeys(cfg *config.Config, db *database.DB, sealer *seal.Sealer, hs keys.Homeserver, reg prometheus.Registerer,
	log zerolog.Logger, handlers *inbound.Handlers, hooks map[string]matrix.SentHook) (*keys.Manager, error) {
	k := cfg.Keys
	m, err := keys.New(keys.Config{DB: db, Sealer: sealer, Homeserver: hs, Metrics: keys.NewMetrics(reg),
		Log: log.With().Str("component", "keys").Logger(), Suite: suite.ID(k.Suite), Stock: k.Stock, LowWater: k.LowWater,
		CheckInterval: k.CheckInterval.D(), Lifetime: k.Lifetime.D(), LastResortGrace: k.LastResortGrace.D()})
	if err != nil {
		return nil, err
	}
	counts, timers := m.Handlers()
	handlers.KeyCounts = append(handlers.KeyCounts, counts)
	if handlers.Timers == nil {
		handlers.Timers = map[string]inbound.TimerHandler{}
	}
	maps.Copy(handlers.Timers, timers)
	hooks[keys.HookName] = m
	return m, nil
}

// keysCommand runs `keys reseal`.
func keysCommand(ctx context.Context, cfg *config.Config, db *database.DB, args []string, out io.Writer) error {
	if len(args) != 1 || args[0] != "reseal" {
		return fmt.Errorf("keys: want one subcommand\n%s", commandUsage)
	}
	current, old, err := cfg.SealKeys()
	if err != nil {
		return err
	}
	sealer, err := seal.NewSealer(current, old...)
	if err != nil {
		return err
	}
	n, err := reseal.Run(ctx, db, sealer, slices.Concat(keys.SealedColumns(), groups.SealedColumns(), botapi.SealedColumns()))
	fmt.Fprintf(out, "re-sealed %d values under key %s\n", n, current.ID())
	if err != nil {
		return fmt.Errorf("keys reseal (run it again to continue): %w", err)
	}
	if len(old) > 0 {
		fmt.Fprintln(out, "every value is now under the current key; encryption.old_keys can be emptied")
	}
	return nil
}
