package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mls-appservice/mls-appservice/botapi/client"
)

// SynapseOptions configure a run through the bot API and Synapse.
type SynapseOptions struct {
	// Client is a bot's client of the service's bot API.
	Client *client.Client
	// Puppets to create, Rooms to create, Members per room, Devices per
	// puppet. Room j holds the puppets j*Members ... (j+1)*Members-1,
	// modulo Puppets.
	Puppets, Rooms, Members, Devices int
	// Rate is messages per second in all; Duration how long they are sent.
	Rate     float64
	Duration time.Duration
	// Churn is membership changes per second during the run: a room's
	// last member leaves and is invited back (autojoin brings it in
	// again). Churning members neither send nor count as recipients.
	Churn float64
	// Prefix makes this run's puppet names unique ("load<prefix>p<n>").
	Prefix string
	// Service is the service's process; MetricsURL its /metrics.
	Service    Process
	MetricsURL string
	// DB is the service's database: sizes, and the wait for new devices
	// to be published before the rooms are made (waitPublished; nil: no
	// wait).
	DB *pgxpool.Pool
	// Compact also measures the sizes after Compact, which locks each
	// measured table of the service's database while it rewrites it.
	Compact bool
	// RestWait, with Compact, measures the sizes a third time once every
	// room's group holds one epoch (AtRest), or once this long passed
	// without an epoch dropped: a superseded epoch is kept for the
	// service's groups.epoch_linger.
	RestWait time.Duration
	// Workers bound concurrent setup and send requests (32).
	Workers int
	// SettleTimeout bounds the wait without progress for rooms to
	// converge and for the last deliveries (10 minutes): each room that
	// converges, each delivery that arrives, starts it again. Setting up
	// 1,000 rooms of 10 through one Synapse sends some 28,000 commits,
	// Welcomes and key uploads at about 13 a second, so the whole wait is
	// far longer than any pause in it.
	SettleTimeout time.Duration
	// Progress receives a line every few seconds (nil: none).
	Progress io.Writer
}

// Synapse runs the load through the bot API against the service's real
// Synapse and PostgreSQL.
func Synapse(ctx context.Context, o SynapseOptions) (*Result, error) {
	if o.Workers <= 0 {
		o.Workers = 32
	}
	if o.SettleTimeout <= 0 {
		o.SettleTimeout = 10 * time.Minute
	}
	if o.Members < 2 || o.Members > o.Puppets || o.Devices < 1 || o.Rooms < 1 || o.Rate <= 0 {
		return nil, errors.New("load: want 2 <= members <= puppets, devices >= 1, rooms >= 1, rate > 0")
	}
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "load-progress: "+format+"\n", args...)
		}
	}
	res := &Result{Mode: "synapse", Puppets: o.Puppets, Rooms: o.Rooms, Members: o.Rooms * o.Members,
		Devices: o.Puppets * o.Devices}
	setupStart := time.Now()

	// Puppets.
	users := make([]string, o.Puppets)
	var made atomic.Int64
	err := parallel(ctx, o.Workers, o.Puppets, func(i int) error {
		name := fmt.Sprintf("load%sp%d", o.Prefix, i)
		dev := strings.ToUpper(name) + "D0"
		p, err := o.Client.CreatePuppet(ctx, client.CreatePuppet{Name: name, DeviceID: dev})
		if err != nil {
			return fmt.Errorf("create puppet %s: %w", name, err)
		}
		for d := 1; d < o.Devices; d++ {
			if err := o.Client.AddDevice(ctx, p.UserID, strings.ToUpper(name)+"D"+strconv.Itoa(d), ""); err != nil {
				return fmt.Errorf("add device to %s: %w", p.UserID, err)
			}
		}
		users[i] = p.UserID
		if n := made.Add(1); n%500 == 0 {
			progress("puppets=%d/%d", n, o.Puppets)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	progress("puppets=%d created in %s", o.Puppets, time.Since(setupStart).Round(time.Second))
	if o.DB != nil {
		if err := waitPublished(ctx, o, progress); err != nil {
			return nil, err
		}
		progress("puppets' devices published after %s", time.Since(setupStart).Round(time.Second))
	}

	// Rooms.
	rooms := make([]string, o.Rooms)
	members := make([][]string, o.Rooms)
	for j := range o.Rooms {
		for k := range o.Members {
			members[j] = append(members[j], users[(j*o.Members+k)%o.Puppets])
		}
	}
	err = parallel(ctx, min(o.Workers, 8), o.Rooms, func(j int) error {
		room, err := o.Client.CreateRoom(ctx, members[j][0], client.CreateRoom{Name: fmt.Sprintf("load %s %d", o.Prefix, j),
			Invite: members[j][1:]})
		if err != nil {
			return fmt.Errorf("create room %d: %w", j, err)
		}
		rooms[j] = room
		return nil
	})
	if err != nil {
		return nil, err
	}
	progress("rooms=%d created in %s", o.Rooms, time.Since(setupStart).Round(time.Second))
	if err := waitConverged(ctx, o, rooms, members, progress); err != nil {
		return nil, err
	}
	res.Setup = time.Since(setupStart).Seconds()
	progress("rooms=%d converged after %s", o.Rooms, time.Since(setupStart).Round(time.Second))

	// Who sends and who receives: with churn, each room's last member
	// comes and goes and is left out of both.
	stable := members
	var churners []string
	if o.Churn > 0 && o.Members > 2 {
		stable = make([][]string, o.Rooms)
		for j := range members {
			stable[j] = members[j][:o.Members-1]
			churners = append(churners, members[j][o.Members-1])
		}
	}
	stableSet := map[string]bool{}
	for _, ms := range stable {
		for _, u := range ms {
			stableSet[u] = true
		}
	}

	cpu0, _ := o.Service.CPUSeconds()
	commits0, _ := Counter(ctx, o.MetricsURL, "mlsas_dmls_commits_made_total")
	commitTime0, _ := Counter(ctx, o.MetricsURL, "mlsas_dmls_commit_seconds_sum")
	timed0, _ := Counter(ctx, o.MetricsURL, "mlsas_dmls_commit_seconds_count")
	tr := newTracker()
	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	stream, err := o.Client.Events(streamCtx, "")
	if err != nil {
		return nil, fmt.Errorf("open the event stream: %w", err)
	}
	defer stream.Close()
	go func() {
		for {
			ev, err := stream.Next()
			if err != nil {
				return
			}
			if ev.Kind != "message" || !stableSet[ev.Puppet] || ev.Sender == ev.Puppet {
				continue
			}
			var c struct {
				Body string `json:"body"`
			}
			if json.Unmarshal(ev.Content, &c) != nil {
				continue
			}
			tr.delivered(c.Body, ev.Puppet, time.Now())
		}
	}()

	// Churn alongside the sending.
	churnCtx, stopChurn := context.WithCancel(ctx)
	var churnWG sync.WaitGroup
	if len(churners) > 0 {
		churnWG.Add(1)
		go func() {
			defer churnWG.Done()
			tick := time.NewTicker(time.Duration(float64(time.Second) / o.Churn))
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-churnCtx.Done():
					return
				case <-tick.C:
				}
				j := n % o.Rooms
				if err := o.Client.Leave(churnCtx, churners[j], rooms[j]); err != nil {
					continue
				}
				_ = o.Client.Invite(churnCtx, members[j][0], rooms[j], churners[j])
			}
		}()
	}

	// Send at the rate.
	start := time.Now()
	total := int(o.Rate * o.Duration.Seconds())
	var sendErrs atomic.Int64
	var lastErr atomic.Value
	interval := time.Duration(float64(time.Second) / o.Rate)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				j := i % o.Rooms
				from := stable[j][rand.IntN(len(stable[j]))]
				body := fmt.Sprintf("load %s %d", o.Prefix, i)
				tr.sent(body, len(stable[j])-1, time.Now())
				if _, err := o.Client.Send(ctx, from, rooms[j], "m.room.message",
					map[string]string{"msgtype": "m.text", "body": body}, fmt.Sprintf("load-%s-%d", o.Prefix, i)); err != nil {
					sendErrs.Add(1)
					lastErr.Store(err.Error())
				}
			}
		}()
	}
	lastProgress := time.Now()
	for i := range total {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		jobs <- i
		if time.Since(lastProgress) > 5*time.Second {
			lastProgress = time.Now()
			s, d := tr.counts()
			progress("sending %d/%d messages, deliveries %d/%d", i, total, d, s)
		}
	}
	close(jobs)
	wg.Wait()
	stopChurn()
	churnWG.Wait()
	sendSeconds := time.Since(start).Seconds()
	commits1, _ := Counter(ctx, o.MetricsURL, "mlsas_dmls_commits_made_total")
	commitTime1, _ := Counter(ctx, o.MetricsURL, "mlsas_dmls_commit_seconds_sum")
	timed1, _ := Counter(ctx, o.MetricsURL, "mlsas_dmls_commit_seconds_count")
	if n := timed1 - timed0; n > 0 {
		res.CommitMs = 1000 * (commitTime1 - commitTime0) / n
	}
	if n := sendErrs.Load(); n > 0 {
		progress("%d sends failed, the last: %v", n, lastErr.Load())
	}

	// Deliveries that stop coming end the wait: the result says what
	// arrived.
	_ = settle(ctx, o.SettleTimeout, time.Second, func() (bool, int64, error) {
		s, d := tr.counts()
		if d < s {
			progress("waiting for deliveries %d/%d", d, s)
		}
		return d >= s, int64(d), nil
	})
	res.Seconds = tr.last().Sub(start).Seconds()
	if res.Seconds < sendSeconds {
		res.Seconds = sendSeconds
	}
	res.Messages = total
	res.Sent, res.Delivered = tr.counts()
	res.MsgsPerS = float64(total) / res.Seconds
	res.P50ms, res.P99ms = tr.lat.percentile(0.5), tr.lat.percentile(0.99)
	res.Commits = int(commits1 - commits0)
	res.CommitsPS = float64(res.Commits) / sendSeconds
	return res, finish(ctx, res, o.Service, o.DB, sizing{o.Compact, o.RestWait}, cpu0)
}

// sizing is which of the database's sizes finish measures besides those
// as PostgreSQL holds them: after Compact, and at rest.
type sizing struct {
	compact  bool
	restWait time.Duration
}

// finish adds the process's and the database's figures.
func finish(ctx context.Context, res *Result, proc Process, db *pgxpool.Pool, sz sizing, cpu0 float64) error {
	if proc.PID > 0 {
		rss, err := proc.PeakRSS()
		if err != nil {
			return err
		}
		res.RSSMB = float64(rss) / (1 << 20)
		cpu1, err := proc.CPUSeconds()
		if err != nil {
			return err
		}
		if res.Messages > 0 {
			res.CPUPer1k = (cpu1 - cpu0) / float64(res.Messages) * 1000
		}
	}
	if db != nil {
		var err error
		if res.Durability, err = Durability(ctx, db); err != nil {
			return err
		}
		res.BytesPerMember, res.BytesPerOwnDevice, res.Tables, err = StateSizes(ctx, db, res.Members, res.Devices)
		if err != nil {
			return err
		}
		if res.LogBytesPerEntry, err = LogSizes(ctx, db, res.Tables); err != nil {
			return err
		}
		if res.EpochParts, err = EpochParts(ctx, db); err != nil {
			return err
		}
		if !sz.compact {
			return nil
		}
		if err := Compact(ctx, db); err != nil {
			return err
		}
		res.CompactBytesPerMember, res.CompactBytesPerOwnDevice, res.CompactTables, err = StateSizes(ctx, db, res.Members, res.Devices)
		if err != nil {
			return err
		}
		if res.DeviceParts, err = DeviceParts(ctx, db, res.Devices); err != nil {
			return err
		}
		if sz.restWait > 0 {
			return AtRest(ctx, res, db, sz.restWait)
		}
	}
	return nil
}

// waitConverged polls every room until every member joined (invitations
// are accepted by the service's autojoin) and its group holds every
// member's devices in one epoch.
func waitConverged(ctx context.Context, o SynapseOptions, rooms []string, members [][]string, progress func(string, ...any)) error {
	want := o.Members * o.Devices
	done := make([]bool, len(rooms))
	n := 0 // rooms done, as of the last poll
	err := settle(ctx, o.SettleTimeout, 2*time.Second, func() (bool, int64, error) {
		var mu sync.Mutex
		n = 0
		_ = parallel(ctx, min(o.Workers, 8), len(rooms), func(j int) error {
			if done[j] {
				mu.Lock()
				n++
				mu.Unlock()
				return nil
			}
			st, err := o.Client.Room(ctx, members[j][0], rooms[j])
			joined := 0
			for _, m := range st.Members {
				if m == "join" {
					joined++
				}
			}
			if err == nil && st.Converged && len(st.Devices) == want && joined == o.Members {
				mu.Lock()
				done[j] = true
				n++
				mu.Unlock()
			}
			return nil
		})
		if n < len(rooms) {
			progress("rooms converged %d/%d", n, len(rooms))
		}
		return n == len(rooms), int64(n), nil
	})
	if errors.Is(err, errStalled) {
		return fmt.Errorf("load: %d of %d rooms converged, none more in %s", n, len(rooms), o.SettleTimeout)
	}
	return err
}

// waitPublished waits until the service's outbox holds nothing unsent
// and every device of ours is cross-signed: a new puppet's devices
// publish their keys and KeyPackages through the outbox, then sign them.
// Rooms made before that wait for Synapse behind thousands of uploads (a
// createRoom outlasted its minute at 10,000 devices), find no KeyPackages
// to claim, and each signature, a device-list change of its user, asks
// every room of the user to reconcile again.
func waitPublished(ctx context.Context, o SynapseOptions, progress func(string, ...any)) error {
	var unsent, unsigned int64
	err := settle(ctx, o.SettleTimeout, 2*time.Second, func() (bool, int64, error) {
		var err error
		if unsent, unsigned, err = Unpublished(ctx, o.DB); err != nil {
			return false, 0, err
		}
		if unsent+unsigned > 0 {
			progress("outbox rows unsent %d, devices not cross-signed %d", unsent, unsigned)
		}
		return unsent+unsigned == 0, -(unsent + unsigned), nil
	})
	if errors.Is(err, errStalled) {
		return fmt.Errorf("load: %d outbox rows unsent and %d devices not cross-signed, none done in %s", unsent, unsigned, o.SettleTimeout)
	}
	return err
}

// Unpublished counts what the service behind db has still to publish:
// outbox rows not sent (nor given up) and devices of ours not
// cross-signed.
func Unpublished(ctx context.Context, db *pgxpool.Pool) (unsent, unsigned int64, err error) {
	err = db.QueryRow(ctx, `SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL),
		(SELECT count(*) FROM puppet_device WHERE cross_signed_at IS NULL)`).Scan(&unsent, &unsigned)
	if err != nil {
		return 0, 0, fmt.Errorf("load: the service's outbox: %w", err)
	}
	return unsent, unsigned, nil
}

// errStalled is settle's error when no progress came within its timeout.
var errStalled = errors.New("no progress")

// settle calls poll every interval until it reports done, returns an
// error, or reports no progress (a higher mark) for timeout.
func settle(ctx context.Context, timeout, interval time.Duration, poll func() (done bool, mark int64, err error)) error {
	deadline, best := time.Now().Add(timeout), int64(math.MinInt64)
	for {
		done, mark, err := poll()
		if done || err != nil {
			return err
		}
		if mark > best {
			deadline, best = time.Now().Add(timeout), mark
		}
		if time.Now().After(deadline) {
			return errStalled
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// parallel runs fn(0..n-1) on workers goroutines, stopping at the first
// error.
func parallel(ctx context.Context, workers, n int, fn func(int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := fn(i); err != nil {
					cancel(err)
				}
			}
		}()
	}
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	return context.Cause(ctx)
}

// tracker matches deliveries to sends by message body.
type tracker struct {
	mu       sync.Mutex
	sentAt   map[string]time.Time
	seen     map[string]map[string]bool
	expected int
	got      int
	lat      latencies
	lastAt   time.Time
}

func newTracker() *tracker {
	return &tracker{sentAt: map[string]time.Time{}, seen: map[string]map[string]bool{}}
}

func (t *tracker) sent(body string, recipients int, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sentAt[body] = at
	t.seen[body] = map[string]bool{}
	t.expected += recipients
}

func (t *tracker) delivered(body, to string, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sent, ok := t.sentAt[body]
	if !ok || t.seen[body][to] {
		return
	}
	t.seen[body][to] = true
	t.got++
	t.lat = append(t.lat, at.Sub(sent))
	t.lastAt = at
}

func (t *tracker) counts() (expected, got int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.expected, t.got
}

func (t *tracker) last() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastAt
}
