package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/botapi/client"
	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/groups"
	"github.com/mls-appservice/mls-appservice/internal/load"
)

// loadSize is the load test's size, small by default so that CI runs both
// modes in a few minutes; the environment scales it up for the figures:
//
//	MLSAS_LOAD_PUPPETS=10000 MLSAS_LOAD_ROOMS=1000 MLSAS_LOAD_MEMBERS=10 \
//	MLSAS_LOAD_DURATION=120s MLSAS_LOAD_RATE=50 MLSAS_LOAD_MODES=synapse \
//	./scripts/with-env go test -count=1 -timeout 3h -run 'TestLoad$' -v ./cmd/mls-appservice/
//
// MLSAS_LOAD_DEVICES sets the devices of each puppet (100 puppets of 100
// devices in one room make a group of 10,000). MLSAS_LOAD_BATCH_SIZE and
// MLSAS_LOAD_WORKERS set the intake-measured
// service's processing.batch_size and processing.workers (their defaults
// otherwise).
type loadSize struct {
	puppets, rooms, members, devices int
	rate, churn                      float64
	duration                         time.Duration
	intakeMessages, batchSize        int
	workers                          int
	modes                            string
	jsonDir                          string
}

func loadSizeFromEnv(t *testing.T) loadSize {
	// CI's size: measured at 200 puppets in 20 rooms for 30 s, both modes
	// took 9 minutes on the shared 2-core machine; half of that fits.
	s := loadSize{puppets: 100, rooms: 10, members: 10, devices: 1, rate: 10, churn: 0.2, duration: 20 * time.Second,
		intakeMessages: 2000, modes: "synapse,intake", jsonDir: os.Getenv("MLSAS_LOAD_JSON_DIR")}
	ints := map[string]*int{"MLSAS_LOAD_PUPPETS": &s.puppets, "MLSAS_LOAD_ROOMS": &s.rooms, "MLSAS_LOAD_MEMBERS": &s.members,
		"MLSAS_LOAD_DEVICES": &s.devices, "MLSAS_LOAD_INTAKE_MESSAGES": &s.intakeMessages, "MLSAS_LOAD_BATCH_SIZE": &s.batchSize,
		"MLSAS_LOAD_WORKERS": &s.workers}
	for k, p := range ints {
		if v := os.Getenv(k); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			*p = n
		}
	}
	for k, p := range map[string]*float64{"MLSAS_LOAD_RATE": &s.rate, "MLSAS_LOAD_CHURN": &s.churn} {
		if v := os.Getenv(k); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			*p = f
		}
	}
	if v := os.Getenv("MLSAS_LOAD_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("MLSAS_LOAD_DURATION: %v", err)
		}
		s.duration = d
	}
	if v := os.Getenv("MLSAS_LOAD_MODES"); v != "" {
		s.modes = v
	}
	return s
}

// TestLoad runs mls-appservice-load's measurements (package
// internal/load) against the real service, Synapse and PostgreSQL, in
// both modes, prints their load: lines and checks that every message
// reached every member it was sent to.
func TestLoad(t *testing.T) {
	size := loadSizeFromEnv(t)
	for _, mode := range strings.Split(size.modes, ",") {
		t.Run(mode, func(t *testing.T) {
			var res *load.Result
			switch mode {
			case "synapse":
				res = loadSynapse(t, size)
			case "intake":
				res = loadIntake(t, size)
			default:
				t.Fatalf("mode %q", mode)
			}
			fmt.Println(res.Line())
			fmt.Println(res.Details())
			t.Logf("pg_total_relation_size by table: %v", res.Tables)
			t.Logf("dmls_epoch's live bytes by part: %v", res.EpochParts)
			t.Logf("pg_total_relation_size by table after VACUUM FULL: %v", res.CompactTables)
			t.Logf("bytes per own device by column after VACUUM FULL: %v", res.DeviceParts)
			if res.RestTables != nil {
				t.Logf("pg_total_relation_size by table at rest (%.1f epochs a room): %v", res.RestEpochsPerRoom, res.RestTables)
				t.Logf("bytes per member by column at rest: %v", res.RestMemberParts)
			}
			if size.jsonDir != "" {
				if err := res.WriteJSON(filepath.Join(size.jsonDir, "load-"+mode+".json")); err != nil {
					t.Error(err)
				}
			}
			if res.Delivered != res.Sent || res.Sent == 0 {
				t.Errorf("delivered %d of %d", res.Delivered, res.Sent)
			}
		})
	}
}

func loadSynapse(t *testing.T, size loadSize) *load.Result {
	opts := botAPIOptions(t, "loads")
	opts.extra["botapi"]["rate_limit"] = 100000
	opts.extra["botapi"]["rate_burst"] = 100000
	opts.extra["logging"] = map[string]any{"level": "warn"}
	// MLSAS_LOAD_PPROF set: the measured service serves its profiler
	// and metrics on an address of their own, logged, to profile one
	// phase of a run by hand (go tool pprof
	// http://<address>/debug/pprof/profile?seconds=60).
	metricsAddr := ""
	if os.Getenv("MLSAS_LOAD_PPROF") != "" {
		metricsAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
		opts.extra["appservice"] = map[string]any{"metrics_address": metricsAddr, "pprof": true}
	}
	_, svcs := startServices(t, opts)
	S := svcs[0]
	metricsURL := S.proc.base + "/metrics"
	if metricsAddr != "" {
		metricsURL = "http://" + metricsAddr + "/metrics"
		t.Logf("the measured service's profiler: http://%s/debug/pprof/", metricsAddr)
	}
	c := client.New(botAPIBase(t, S.cfgPath), addBot(t, S.cfgPath, "load"))
	res, err := load.Synapse(context.Background(), load.SynapseOptions{Client: c, Compact: true, Puppets: size.puppets, Rooms: size.rooms,
		Members: size.members, Devices: size.devices, Rate: size.rate, Duration: size.duration, Churn: size.churn,
		Prefix: "s", Service: load.Process{PID: S.proc.cmd.Process.Pid}, MetricsURL: metricsURL,
		DB: S.db.Pool, Progress: os.Stdout})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// loadIntake prepares the intake's transactions with a peer group: a
// second service P whose puppet shares every room with the measured
// service S's puppets. Once the rooms converged through Synapse, P's
// process is stopped and P's components encrypt the messages (their
// outbox rows are never sent); the rows become m.room.encrypted events
// in transactions as Synapse would send them to S.
func loadIntake(t *testing.T, size loadSize) *load.Result {
	// MLSAS_LOAD_LOG_LEVEL sets both services' log level (warn).
	level := cmp.Or(os.Getenv("MLSAS_LOAD_LOG_LEVEL"), "warn")
	quiet := map[string]map[string]any{"logging": {"level": level}}
	measured := map[string]map[string]any{"logging": {"level": level}}
	processing := map[string]any{}
	if size.batchSize > 0 {
		processing["batch_size"] = size.batchSize
	}
	if size.workers > 0 {
		processing["workers"] = size.workers
		// Each worker holds a connection (config: database.max_conns).
		measured["database"] = map[string]any{"max_conns": size.workers + 12}
	}
	if len(processing) > 0 {
		measured["processing"] = processing
	}
	profile := os.Getenv("MLSAS_LOAD_CPUPROFILE")
	metricsAddr := ""
	if profile != "" {
		metricsAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
		measured["appservice"] = map[string]any{"metrics_address": metricsAddr, "pprof": true}
	}
	_, svcs := startServices(t, serviceOptions{name: "loadi", extra: measured}, serviceOptions{name: "loadp", extra: quiet})
	S, P := svcs[0], svcs[1]
	ctx := context.Background()
	w := &e2eWorld{t: t, puppets: map[id.UserID]*testService{}, devices: map[id.UserID][]id.DeviceID{}}
	perRoom := size.members - 1
	ours := createPuppets(t, w, S, "li", size.puppets)
	peer := createPuppets(t, w, P, "lp", 1)[0]
	rooms := make([]id.RoomID, size.rooms)
	start := time.Now()
	for j := range rooms {
		var invite []id.UserID
		for k := range perRoom {
			invite = append(invite, ours[(j*perRoom+k)%len(ours)])
		}
		room, err := P.c.groups.CreateRoom(ctx, peer, "", groups.CreateRoomOptions{Name: fmt.Sprintf("intake %d", j)})
		if err != nil {
			t.Fatal(err)
		}
		inviteAll(t, P, peer, room, invite)
		rooms[j] = room
	}
	// Converged, and every member joined as S sees the room: a message
	// reaches only the puppets joined when it is processed, and the
	// invitees' joins, which S's puppets make through Synapse, can reach
	// S after the group converged on the Welcomes (at 1,000 puppets in
	// 100 rooms, 12 rooms' joins arrived after their messages). Every
	// device of S holds its keys, and P is in S's epoch: P is stopped
	// next, and a commit of P's not yet sent (a device of S re-added after
	// its Welcome came late) would put every message after it in an epoch
	// S never sees.
	for j, room := range rooms {
		until(t, 10*time.Minute, fmt.Sprintf("intake room %d converged", j), func(ctx context.Context) (bool, error) {
			info, err := S.c.groups.Room(ctx, room)
			if err != nil {
				return false, nil
			}
			joined := 0
			for _, m := range info.Members {
				if m == "join" {
					joined++
				}
			}
			if !info.Converged || len(info.Devices) != size.members || len(info.Ours) != perRoom || joined != size.members {
				return false, nil
			}
			pinfo, err := P.c.groups.Room(ctx, room)
			return err == nil && pinfo.Converged && pinfo.EpochID == info.EpochID, nil
		})
	}
	t.Logf("intake: %d rooms converged in %s", len(rooms), time.Since(start).Round(time.Second))
	for _, c := range []struct {
		svc  *testService
		name string
	}{{S, "S"}, {P, "P"}} {
		for _, metric := range []string{"mlsas_dmls_orphans_removed_total", "mlsas_dmls_commits_made_total",
			"mlsas_dmls_commits_rejected_total"} {
			n, err := load.Counter(ctx, c.svc.proc.base+"/metrics", metric)
			if err != nil {
				t.Errorf("metrics: %v", err)
			}
			t.Logf("intake: %s's %s %v while the rooms converged", c.name, metric, n)
		}
	}
	// How long P's requests waited in its outbox (Welcomes that come late
	// make S's devices orphans).
	waits, err := P.db.Query(ctx, `SELECT kind, count(*),
		percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)),
		max(extract(epoch FROM sent_at - created_at)) FROM outbox WHERE sent_at IS NOT NULL GROUP BY kind ORDER BY kind`)
	if err != nil {
		t.Fatal(err)
	}
	var kind string
	var n int
	var median, longest float64
	if _, err := pgx.ForEachRow(waits, []any{&kind, &n, &median, &longest}, func() error {
		t.Logf("intake: P's outbox: %d %s rows sent, median %.1fs and at most %.1fs after they were written", n, kind, median, longest)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The peer group encrypts; nothing it makes is sent.
	P.proc.stop()
	cfg := *P.cfg
	cfg.Groups.SendTimeout = config.Duration(time.Millisecond)
	enc, err := assemble(&cfg, P.db, prometheus.NewRegistry(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	for i := range size.intakeMessages {
		if _, err := enc.groups.Send(ctx, peer, "", rooms[i%len(rooms)], "m.room.message",
			json.RawMessage(fmt.Sprintf(`{"msgtype":"m.text","body":"intake %d"}`, i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := P.db.Query(ctx, `SELECT room_id, user_id, content FROM outbox
		WHERE kind = 'room_event' AND sent_at IS NULL AND hook IS NULL ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	type wireEvent struct {
		Type    string          `json:"type"`
		RoomID  string          `json:"room_id"`
		EventID string          `json:"event_id"`
		Sender  string          `json:"sender"`
		TS      int64           `json:"origin_server_ts"`
		Content json.RawMessage `json:"content"`
	}
	var events []wireEvent
	for rows.Next() {
		var e wireEvent
		if err := rows.Scan(&e.RoomID, &e.Sender, &e.Content); err != nil {
			t.Fatal(err)
		}
		e.Type, e.TS = "m.room.encrypted", time.Now().UnixMilli()
		e.EventID = fmt.Sprintf("$loadi%d", len(events))
		events = append(events, e)
	}
	if rows.Err() != nil || len(events) != size.intakeMessages {
		t.Fatalf("%d messages encrypted by the peer, want %d (%v)", len(events), size.intakeMessages, rows.Err())
	}
	t.Logf("intake: the peer encrypted %d messages in %s", len(events), time.Since(start).Round(time.Second))
	const perTxn = 100 // Synapse puts at most 100 events in a transaction
	var txns []load.Transaction
	for i := 0; i < len(events); i += perTxn {
		batch := events[i:min(i+perTxn, len(events))]
		body, err := json.Marshal(map[string]any{"events": batch})
		if err != nil {
			t.Fatal(err)
		}
		txns = append(txns, load.Transaction{Body: body, Deliveries: len(batch) * perRoom})
	}
	if profile != "" {
		// MLSAS_LOAD_CPUPROFILE=file: the measured service's CPU profile
		// over the feed's first 20 s (go tool pprof file).
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			if err := fetchProfile(ctx, "http://"+metricsAddr+"/debug/pprof/profile?seconds=20", profile); err != nil {
				t.Errorf("CPU profile: %v", err)
			} else {
				t.Logf("CPU profile of the intake run written to %s", profile)
			}
		}()
	}
	statements := pgStatements(t, S.db.Pool)
	// At rest: once S's rooms hold one epoch each, which groups.epoch_linger
	// (1 minute) after the last commit they do.
	restWait := S.cfg.Groups.EpochLinger.D() + 30*time.Second
	res, err := load.Intake(ctx, load.IntakeOptions{URL: S.proc.base, Compact: true, RestWait: restWait, HSToken: S.cfg.AppService.HSToken, Transactions: txns,
		EventPrefix: "$loadi", Puppets: size.puppets, Rooms: size.rooms, Members: size.rooms * size.members,
		Devices: size.puppets, Service: load.Process{PID: S.proc.cmd.Process.Pid}, Database: postmaster(t, S.db.Pool),
		DB: S.db.Pool, Progress: os.Stdout})
	if err != nil {
		t.Fatal(err)
	}
	if err := load.Aged(ctx, res, S.db.Pool); err != nil {
		t.Errorf("sizes once retention dropped superseded membership events: %v", err)
	}
	statements()
	// The measured service S made no commit: P made them all, and a
	// committer's epochs hold more (each punctured PRF, DMLS). P's
	// shared state per member is the figure for a service that commits.
	if perMember, _, _, err := load.StateSizes(ctx, P.db.Pool, res.Members, 1); err != nil {
		t.Errorf("P's state sizes: %v", err)
	} else if parts, err := load.EpochParts(ctx, P.db.Pool); err != nil {
		t.Errorf("P's epoch parts: %v", err)
	} else {
		t.Logf("intake: P (the committer) holds %.0f bytes of shared state per member; dmls_epoch's live bytes by part: %v", perMember, parts)
	}
	for _, outcome := range []string{"applied", "one_by_one"} {
		n, err := load.Counter(ctx, S.proc.base+"/metrics", "mlsas_work_run_events_total", "outcome="+strconv.Quote(outcome))
		if err != nil {
			t.Errorf("metrics: %v", err)
		}
		t.Logf("intake: %d room events offered in runs were %s", int(n), strings.ReplaceAll(outcome, "_", " "))
	}
	for _, outcome := range []string{"parsed", "missed"} {
		n, err := load.Counter(ctx, S.proc.base+"/metrics", "mlsas_handoff_taken_total", "outcome="+strconv.Quote(outcome))
		if err != nil {
			t.Errorf("metrics: %v", err)
		}
		t.Logf("intake: the splitter %s the intake's parse of %d transactions", map[string]string{"parsed": "took", "missed": "did not find"}[outcome], int(n))
	}
	return res
}

// pgStatements, with MLSAS_LOAD_PG_STATEMENTS set, clears PostgreSQL's
// statement statistics now and returns a function that logs the
// statements of db's database that took most of the server's time since,
// for the intake run (needs the pg_stat_statements library loaded:
// MLSAS_TEST_PG_OPTIONS='-c shared_preload_libraries=pg_stat_statements').
// Otherwise it does nothing.
func pgStatements(t *testing.T, db *pgxpool.Pool) func() {
	if os.Getenv("MLSAS_LOAD_PG_STATEMENTS") == "" {
		return func() {}
	}
	ctx := context.Background()
	if _, err := db.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		t.Fatalf("MLSAS_LOAD_PG_STATEMENTS: %v (is the library preloaded?)", err)
	}
	if _, err := db.Exec(ctx, `SELECT pg_stat_statements_reset()`); err != nil {
		t.Fatalf("MLSAS_LOAD_PG_STATEMENTS: %v", err)
	}
	return func() {
		rows, err := db.Query(ctx, `SELECT calls, total_exec_time, rows, regexp_replace(query, '\s+', ' ', 'g')
			FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
			ORDER BY total_exec_time DESC LIMIT 25`)
		if err != nil {
			t.Errorf("pg_stat_statements: %v", err)
			return
		}
		var calls, n int64
		var total float64
		var query string
		var sum float64
		if _, err := pgx.ForEachRow(rows, []any{&calls, &total, &n, &query}, func() error {
			sum += total
			t.Logf("intake: PostgreSQL %8.0f ms %8d calls %7.1f µs/call %8d rows: %.160s", total, calls, 1000*total/float64(max(calls, 1)), n, query)
			return nil
		}); err != nil {
			t.Errorf("pg_stat_statements: %v", err)
		}
		t.Logf("intake: PostgreSQL: the 25 statements above took %.0f ms", sum)
	}
}

// postmaster is the PostgreSQL server behind db, if it runs on this
// machine and tells its data directory (a superuser's setting), so that
// its CPU time can be measured; PID 0 if not.
func postmaster(t *testing.T, db *pgxpool.Pool) load.Process {
	var dir string
	if err := db.QueryRow(context.Background(), `SHOW data_directory`).Scan(&dir); err != nil {
		t.Logf("PostgreSQL's CPU not measured: %v", err)
		return load.Process{}
	}
	data, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		t.Logf("PostgreSQL's CPU not measured: %v", err)
		return load.Process{}
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Logf("PostgreSQL's CPU not measured: postmaster.pid: %v", err)
		return load.Process{}
	}
	return load.Process{PID: pid}
}

// fetchProfile saves the profile served at url to file.
func fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
