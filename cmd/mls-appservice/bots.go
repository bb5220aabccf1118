package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/bots"
	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
)

// botAPIRun returns the bot API's run function if botapi.enabled.
func (c *components) botAPIRun(cfg *config.Config) []func(context.Context) error {
	if !cfg.BotAPI.Enabled {
		return nil
	}
	return []func(context.Context) error{c.botapi.Run}
}

// csapiRun returns the client-server façade's run function if
// csapi.enabled.
func (c *components) csapiRun(cfg *config.Config) []func(context.Context) error {
	if !cfg.CSAPI.Enabled {
		return nil
	}
	return []func(context.Context) error{c.csapi.Run}
}

// botsCommand runs `bots add NAME|list|revoke NAME|token BOT PUPPET [DEVICE]`.
func botsCommand(ctx context.Context, _ *config.Config, db *database.DB, args []string, out io.Writer) error {
	reg := bots.New(db)
	if len(args) == 0 {
		return fmt.Errorf("bots: missing subcommand\n%s", commandUsage)
	}
	switch {
	case args[0] == "add" && len(args) == 2:
		token, err := reg.Add(ctx, args[1])
		if err != nil {
			return fmt.Errorf("bots add: %w", err)
		}
		fmt.Fprintf(out, "bot %s added; its token (shown only now, keep it secret):\n%s\n", args[1], token)
		return nil
	case args[0] == "list" && len(args) == 1:
		list, err := reg.List(ctx)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintln(out, "no bots (add one with: bots add NAME)")
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BOT\tPUPPETS\tCREATED\tREVOKED")
		for _, b := range list {
			revoked := "-"
			if !b.RevokedAt.IsZero() {
				revoked = b.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", b.Name, b.Puppets, b.CreatedAt.UTC().Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	case args[0] == "revoke" && len(args) == 2:
		if err := reg.Revoke(ctx, args[1]); err != nil {
			return fmt.Errorf("bots revoke: %w", err)
		}
		fmt.Fprintf(out, "bot %s revoked: its token and its puppets' access tokens no longer work\n", args[1])
		return nil
	case args[0] == "token" && (len(args) == 3 || len(args) == 4):
		puppet := id.UserID(args[2])
		devices, err := database.PuppetDevices(ctx, db, string(puppet))
		if err != nil {
			return err
		}
		var device id.DeviceID
		switch {
		case len(args) == 4:
			for _, d := range devices {
				if d == args[3] {
					device = id.DeviceID(d)
				}
			}
			if device == "" {
				return fmt.Errorf("bots token: %s has no device %s (it has %v)", puppet, args[3], devices)
			}
		case len(devices) == 0:
			return fmt.Errorf("bots token: %s has no device", puppet)
		default:
			device = id.DeviceID(devices[0])
		}
		token, err := reg.IssueAccessToken(ctx, args[1], puppet, device)
		if errors.Is(err, bots.ErrOtherBot) || errors.Is(err, bots.ErrNoPuppet) {
			return fmt.Errorf("bots token: %s is not a puppet of bot %s: %w", puppet, args[1], err)
		}
		if err != nil {
			return fmt.Errorf("bots token: %w", err)
		}
		fmt.Fprintf(out, "access token of %s device %s (shown only now, keep it secret):\n%s\n", puppet, device, token)
		return nil
	}
	return fmt.Errorf("bots: want add NAME, list, revoke NAME or token BOT PUPPET [DEVICE]\n%s", commandUsage)
}
