package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
)

// roomsCommand runs `rooms` and `rooms show ROOM`.
func roomsCommand(ctx context.Context, cfg *config.Config, db *database.DB, args []string, out io.Writer) error {
	c, err := assemble(cfg, db, prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		return err
	}
	switch {
	case len(args) == 0:
		rooms, err := c.groups.Rooms(ctx)
		if err != nil {
			return err
		}
		if len(rooms) == 0 {
			fmt.Fprintln(out, "no DMLS rooms")
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROOM\tSTATE\tEPOCH\tHEADS\tOUR DEVICES\tMEMBERS\tWITHOUT MLS\tPARKED")
		for _, r := range rooms {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", r.RoomID, r.State, r.Epoch, len(r.Heads), len(r.Ours),
				countIn(r.Members), len(r.LeftOut), r.Parked)
		}
		return tw.Flush()
	case len(args) == 2 && args[0] == "show":
		info, err := c.groups.Room(ctx, id.RoomID(args[1]))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "room %s (%s)\nepoch %d %s, authenticator %s\nheads: %s\nour devices: %s\ngroup devices (%d): %s\nwithout MLS: %s\nparked items: %d\n",
			info.RoomID, info.State, info.Epoch, info.EpochID, info.Authenticator, strings.Join(info.Heads, ", "),
			strings.Join(info.Ours, ", "), len(info.Devices), strings.Join(info.Devices, ", "),
			strings.Join(info.LeftOut, ", "), info.Parked)
		graph, err := c.groups.Graph(ctx, id.RoomID(args[1]))
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "epochs (newest first):")
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NUMBER\tDMLS_EPOCH\tPARENT\tCREATOR\tCOMMIT EVENT\tRETAINED\tHEAD")
		for _, e := range graph {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%v\t%v\n", e.Number, e.ID, e.Parent, e.Creator, e.CommitEvent, e.Retained, e.Head)
		}
		return tw.Flush()
	}
	return fmt.Errorf("rooms: want no argument or show ROOM\n%s", commandUsage)
}

func countIn(m map[string]string) int {
	n := 0
	for _, st := range m {
		if st == "join" || st == "invite" {
			n++
		}
	}
	return n
}
