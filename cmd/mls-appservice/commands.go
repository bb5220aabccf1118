package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/migrations"
)

const commandUsage = `commands:
  queue list        list parked work items (items that failed too often)
  queue retry N     put parked item N back at the head of its queue
  queue drop N      delete parked item N for good
  keys reseal       re-seal every stored secret under the current encryption.key
                    (after rotating: the old key moved to encryption.old_keys)
  rooms             list our DMLS rooms
  rooms show ROOM   print a room's MLS state and epoch graph
  bots add NAME     register a bot of the bot API and print its token (shown once)
  bots list         list the bots
  bots revoke NAME  revoke a bot: its token and its puppets' access tokens stop working
  bots token BOT PUPPET [DEVICE]
                    print a new access token of the bot's puppet's device (the
                    puppet's first device by default) for the client-server façade`

// command runs an operator subcommand against the configured database.
func command(configPath string, args []string, out io.Writer) error {
	var run func(ctx context.Context, cfg *config.Config, db *database.DB) error
	switch args[0] {
	case "queue":
		run = func(ctx context.Context, _ *config.Config, db *database.DB) error {
			return queueCommand(ctx, db, args[1:], out)
		}
	case "keys":
		run = func(ctx context.Context, cfg *config.Config, db *database.DB) error {
			return keysCommand(ctx, cfg, db, args[1:], out)
		}
	case "rooms":
		run = func(ctx context.Context, cfg *config.Config, db *database.DB) error {
			return roomsCommand(ctx, cfg, db, args[1:], out)
		}
	case "bots":
		run = func(ctx context.Context, cfg *config.Config, db *database.DB) error {
			return botsCommand(ctx, cfg, db, args[1:], out)
		}
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], commandUsage)
	}
	cfg, err := config.Load(configPath)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config %s: %w", configPath, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return fmt.Errorf("config %s: database.uri: %w", configPath, err)
	}
	defer db.Close()
	// Only an up-to-date schema has the tables these commands read.
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return run(ctx, cfg, db)
}

// queueCommand runs `queue list|retry N|drop N`.
func queueCommand(ctx context.Context, db *database.DB, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("queue: missing subcommand\n%s", commandUsage)
	}
	args = append([]string{"queue"}, args...)
	switch args[1] {
	case "list":
		if len(args) != 2 {
			return fmt.Errorf("queue list takes no arguments")
		}
		return queueList(ctx, db, out)
	case "retry", "drop":
		if len(args) != 3 {
			return fmt.Errorf("queue %s: want one item number (see queue list)", args[1])
		}
		seq, err := strconv.ParseInt(args[2], 10, 64)
		if err != nil || seq <= 0 {
			return fmt.Errorf("queue %s: %q is not an item number (see queue list)", args[1], args[2])
		}
		var it database.Item
		if args[1] == "retry" {
			it, err = database.RetryParked(ctx, db, seq)
		} else {
			it, err = database.DropParked(ctx, db, seq)
		}
		if errors.Is(err, database.ErrNotParked) {
			return fmt.Errorf("queue %s: item %d is not parked (see queue list)", args[1], seq)
		}
		if err != nil {
			return err
		}
		verb := map[string]string{"retry": "put back on", "drop": "dropped from"}[args[1]]
		fmt.Fprintf(out, "item %d (%s %s) %s %s\n", it.Seq, it.Kind, describeItem(it), verb, it.Queue)
		return nil
	}
	return fmt.Errorf("queue: unknown subcommand %q\n%s", args[1], commandUsage)
}

func queueList(ctx context.Context, db *database.DB, out io.Writer) error {
	items, err := database.ParkedItems(ctx, db)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		fmt.Fprintln(out, "no parked items")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ITEM\tQUEUE\tKIND\tEVENT\tATTEMPTS\tPARKED\tERROR")
	for _, it := range items {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", it.Seq, it.Queue, it.Kind, describeItem(it), it.Attempts,
			it.ParkedAt.UTC().Format(time.RFC3339), oneLine(it.LastError, 200))
	}
	return tw.Flush()
}

func describeItem(it database.Item) string {
	if it.EventID != "" {
		return it.EventID
	}
	return "-"
}

func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}
