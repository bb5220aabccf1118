// Command mls-appservice runs the MLS Matrix application service.
//
//	mls-appservice -e [-c config.yaml]       write the example configuration
//	mls-appservice -g [-c config.yaml] [-r registration.yaml]
//	                                         write the registration and its tokens
//	mls-appservice [-c config.yaml]          run the service
//	mls-appservice [-c config.yaml] queue list|retry N|drop N
//	                                         list, retry or drop parked work items
//	mls-appservice [-c config.yaml] keys reseal
//	                                         re-seal stored secrets under the current key
//	mls-appservice [-c config.yaml] bots add|list|revoke|token
//	                                         register bots of the bot API, issue tokens
//
// This file only parses flags and wires packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	mlsappservice "github.com/mls-appservice/mls-appservice"
	"github.com/mls-appservice/mls-appservice/appservice"
	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/migrations"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mls-appservice: "+strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("mls-appservice", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("c", "config.yaml", "configuration file")
	registrationPath := fs.String("r", "registration.yaml", "registration file written by -g")
	generate := fs.Bool("g", false, "write the registration file and put its tokens into the configuration")
	example := fs.Bool("e", false, "write the example configuration to the -c path (refuses to overwrite)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return command(*configPath, fs.Args(), os.Stdout)
	}
	switch {
	case *example:
		return writeExample(*configPath)
	case *generate:
		return writeRegistration(*configPath, *registrationPath)
	default:
		return serve(*configPath)
	}
}

func writeExample(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write example config: %w", err)
	}
	if _, err := f.Write(mlsappservice.ExampleConfig()); err != nil {
		f.Close()
		return fmt.Errorf("write example config: %w", err)
	}
	return f.Close()
}

func writeRegistration(configPath, registrationPath string) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	if err := cfg.ValidateForRegistration(); err != nil {
		return fmt.Errorf("config %s: %w", configPath, err)
	}
	reg, err := appservice.NewRegistration(cfg)
	if err != nil {
		return err
	}
	if err := reg.Save(registrationPath); err != nil {
		return fmt.Errorf("write registration: %w", err)
	}
	if err := config.SetTokens(configPath, reg.AppToken, reg.ServerToken); err != nil {
		return fmt.Errorf("write tokens into %s: %w", configPath, err)
	}
	if err := generateEncryptionKey(cfg, configPath); err != nil {
		return err
	}
	fmt.Printf("Wrote %s and put its tokens into %s. Add %s to the homeserver's app_service_config_files.\n",
		registrationPath, configPath, registrationPath)
	return nil
}

func serve(configPath string) error {
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config %s: %w", configPath, err)
	}
	log, err := newLogger(cfg.Logging)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go exitAfterGrace(ctx, cfg.AppService.ShutdownGrace.D(), log)

	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return fmt.Errorf("config %s: database.uri: %w", configPath, err)
	}
	defer db.Close()
	version, err := db.Migrate(ctx, migrations.FS())
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	log.Info().Int("schema_version", version).Msg("Database ready")

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c, err := assemble(cfg, db, reg, log)
	if err != nil {
		return fmt.Errorf("config %s: %w", configPath, err)
	}
	if err := c.start(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	svc := appservice.NewService(appservice.ServiceConfig{Config: cfg, DB: db, Log: log, Registry: reg,
		Metrics: appservice.NewMetrics(reg), Handlers: c.handlers,
		Background:  append([]func(context.Context) error{c.sender.Run, c.puppets.RegisterBot}, append(c.botAPIRun(cfg), c.csapiRun(cfg)...)...),
		ReadyChecks: map[string]func() bool{"bot_registered": c.puppets.BotReady}})
	c.wake = append(c.wake, svc.Wake)
	// A cancellation is a clean stop only when a signal asked for it: a
	// component's own canceled context must not end the process silently.
	if err := svc.Run(ctx); err != nil && (ctx.Err() == nil || !errors.Is(err, context.Canceled)) {
		return err
	}
	if ctx.Err() == nil {
		return errors.New("stopped without a signal")
	}
	log.Info().Msg("Stopped")
	return nil
}

func openDatabase(ctx context.Context, cfg *config.Config) (*database.DB, error) {
	openCtx, cancel := context.WithTimeout(ctx, cfg.Database.ConnectTimeout.D()+10*time.Second)
	defer cancel()
	return database.Open(openCtx, cfg.Database.URI, database.Options{MaxConns: cfg.Database.MaxConns,
		ConnectTimeout: cfg.Database.ConnectTimeout.D()})
}

// exitAfterGrace ends the process once grace has passed after ctx ends
// (SIGTERM), whatever is still running: a frozen database can hold a
// query, and with it an orderly shutdown, for ever. Nothing is lost by
// exiting: the homeserver retries what was not acknowledged, and every
// unfinished item or outbox row is still in the database.
func exitAfterGrace(ctx context.Context, grace time.Duration, log zerolog.Logger) {
	<-ctx.Done()
	time.Sleep(grace)
	log.Error().Dur("grace", grace).Msg("Shutdown did not finish within appservice.shutdown_grace; exiting now")
	os.Exit(3)
}

func newLogger(cfg config.Logging) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("logging.level: %w", err)
	}
	var out io.Writer = os.Stderr
	pretty := cfg.Format == "pretty" || (cfg.Format == "auto" && isatty.IsTerminal(os.Stderr.Fd()))
	if pretty {
		out = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger(), nil
}
