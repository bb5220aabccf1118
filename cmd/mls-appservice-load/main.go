// Command mls-appservice-load measures what a running mls-appservice
// carries (see package internal/load).
//
// Through the bot API and Synapse:
//
//	mls-appservice-load -mode synapse -botapi http://127.0.0.1:29333 -token mlsbot_... \
//	    -pid $(pidof mls-appservice) -metrics http://127.0.0.1:29331/metrics -db postgres://... \
//	    -puppets 200 -rooms 20 -members 10 -devices 1 -rate 20 -duration 30s -churn 0.5 -json out.json
//
// Straight into the intake, with transactions prepared beforehand (one
// JSON object per line: {"body": <transaction>, "deliveries": <n>}, their
// messages encrypted by a peer group that the service's puppets share
// rooms with, every event id starting with -event-prefix):
//
//	mls-appservice-load -mode intake -intake http://127.0.0.1:29331 -hs-token ... \
//	    -transactions txns.jsonl -event-prefix '$loadi' -pid ... -db postgres://...
//
// The end-to-end test TestLoad (cmd/mls-appservice) runs both modes on a
// private Synapse and PostgreSQL, preparing the intake's transactions with
// a second service as the peer group.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mls-appservice/mls-appservice/botapi/client"
	"github.com/mls-appservice/mls-appservice/internal/load"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mls-appservice-load:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mls-appservice-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "synapse", "synapse (through the bot API and Synapse) or intake (transactions straight into the intake)")
	puppets := fs.Int("puppets", 200, "puppets to create (intake: puppets the service holds, for the result line)")
	rooms := fs.Int("rooms", 20, "rooms to create")
	members := fs.Int("members", 10, "members per room")
	devices := fs.Int("devices", 1, "devices per puppet")
	rate := fs.Float64("rate", 20, "messages per second in all (synapse mode)")
	duration := fs.Duration("duration", 30*time.Second, "how long messages are sent (synapse mode)")
	churn := fs.Float64("churn", 0, "membership changes per second during the run (synapse mode)")
	prefix := fs.String("prefix", fmt.Sprintf("%x", time.Now().Unix()), "makes puppet names unique per run")
	botapi := fs.String("botapi", "", "the service's bot API base URL")
	token := fs.String("token", "", "a bot's access token (mls-appservice bots add)")
	pid := fs.Int("pid", 0, "the service's process id (peak RSS and CPU from /proc)")
	metrics := fs.String("metrics", "", "the service's /metrics URL (commits per second)")
	dsn := fs.String("db", "", "the service's PostgreSQL URI (state sizes; synapse: waiting for new devices to be published before rooms are made; intake: deliveries)")
	compact := fs.Bool("compact", false, "with -db, also measure the state after VACUUM FULL of its tables, which locks each while it is rewritten")
	restWait := fs.Duration("rest-wait", 0, "with -compact, measure the state a third time once each room holds one epoch, or once this long passed without an epoch dropped (the service's groups.epoch_linger and a little more; 0: not measured)")
	intakeURL := fs.String("intake", "", "intake mode: the service's appservice listener")
	hsToken := fs.String("hs-token", "", "intake mode: the registration's hs_token")
	txns := fs.String("transactions", "", "intake mode: file of prepared transactions (JSON lines)")
	eventPrefix := fs.String("event-prefix", "", "intake mode: the prefix of every fed event id")
	settle := fs.Duration("settle", 10*time.Minute, "synapse mode: give up when no room converges, or no delivery arrives, for this long")
	jsonOut := fs.String("json", "", "also write the result as JSON to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var db *pgxpool.Pool
	if *dsn != "" {
		var err error
		if db, err = pgxpool.New(ctx, *dsn); err != nil {
			return fmt.Errorf("database: %w", err)
		}
		defer db.Close()
	}
	var res *load.Result
	var err error
	switch *mode {
	case "synapse":
		if *botapi == "" || *token == "" {
			return errors.New("synapse mode needs -botapi and -token")
		}
		res, err = load.Synapse(ctx, load.SynapseOptions{Client: client.New(*botapi, *token), Puppets: *puppets,
			Rooms: *rooms, Members: *members, Devices: *devices, Rate: *rate, Duration: *duration, Churn: *churn,
			Prefix: *prefix, Service: load.Process{PID: *pid}, MetricsURL: *metrics, DB: db, Compact: *compact, RestWait: *restWait, SettleTimeout: *settle,
			Progress: stderr})
	case "intake":
		if *intakeURL == "" || *hsToken == "" || *txns == "" {
			return errors.New("intake mode needs -intake, -hs-token and -transactions")
		}
		var list []load.Transaction
		if list, err = readTransactions(*txns); err != nil {
			return err
		}
		res, err = load.Intake(ctx, load.IntakeOptions{URL: *intakeURL, HSToken: *hsToken, Transactions: list,
			EventPrefix: *eventPrefix, Puppets: *puppets, Rooms: *rooms, Members: *rooms * *members,
			Devices: *puppets * *devices, Service: load.Process{PID: *pid}, DB: db, Compact: *compact, RestWait: *restWait, Progress: stderr})
	default:
		return fmt.Errorf("-mode %q: want synapse or intake", *mode)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, res.Line())
	fmt.Fprintln(stdout, res.Details())
	if *jsonOut != "" {
		return res.WriteJSON(*jsonOut)
	}
	return nil
}

// readTransactions reads prepared transactions, one JSON object a line.
func readTransactions(path string) ([]load.Transaction, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []load.Transaction
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		var t struct {
			Body       json.RawMessage `json:"body"`
			Deliveries int             `json:"deliveries"`
		}
		if err := json.Unmarshal(sc.Bytes(), &t); err != nil || len(t.Body) == 0 {
			return nil, fmt.Errorf("%s:%d: want {\"body\": {...}, \"deliveries\": n}", path, line)
		}
		out = append(out, load.Transaction{Body: t.Body, Deliveries: t.Deliveries})
	}
	return out, sc.Err()
}
