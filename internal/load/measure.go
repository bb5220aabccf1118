package load

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Process reads a running process's resource use from /proc (Linux).
type Process struct{ PID int }

// PeakRSS returns the process's peak resident set size in bytes (VmHWM).
func (p Process) PeakRSS() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		return 0, fmt.Errorf("peak RSS of %d: %w", p.PID, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("peak RSS of %d: %q: %w", p.PID, rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("peak RSS of %d: no VmHWM", p.PID)
}

// CPUSeconds returns the user and system CPU time the process used.
func (p Process) CPUSeconds() (float64, error) {
	f, err := procStat(p.PID)
	if err != nil {
		return 0, err
	}
	return ticks(f, 11, 12)
}

// TreeCPUSeconds returns the CPU time of the process, of its children that
// ended (which it waited for), and of its live children: a database
// server's, whose postmaster forks a process per connection.
func (p Process) TreeCPUSeconds() (float64, error) {
	own, children, err := p.treeCPU()
	return own + children, err
}

// treeCPU returns the process's own CPU time and its children's, the
// waited-for and the live, apart. Its own is read once, before the scan
// of /proc: the scan costs the reader CPU, so a second read of its own
// time would not match the first.
func (p Process) treeCPU() (own, children float64, err error) {
	f, err := procStat(p.PID)
	if err != nil {
		return 0, 0, err
	}
	if own, err = ticks(f, 11, 12); err != nil {
		return 0, 0, err
	}
	if children, err = ticks(f, 13, 14); err != nil {
		return 0, 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, fmt.Errorf("CPU of %d's children: %w", p.PID, err)
	}
	parent := strconv.Itoa(p.PID)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == p.PID {
			continue
		}
		f, err := procStat(pid)
		if err != nil || f[1] != parent {
			continue // gone, or not a child
		}
		if t, err := ticks(f, 11, 12); err == nil {
			children += t
		}
	}
	return own, children, nil
}

// procStat returns the fields of /proc/pid/stat after the command name
// (which may hold spaces): f[0] is the state, f[1] the parent's pid, f[11]
// and f[12] utime and stime, f[13] and f[14] those of waited-for children.
func procStat(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("CPU of %d: %w", pid, err)
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("CPU of %d: malformed stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return nil, fmt.Errorf("CPU of %d: malformed stat", pid)
	}
	return f, nil
}

// ticks sums the stat fields at idx, in clock ticks, as seconds.
func ticks(f []string, idx ...int) (float64, error) {
	const perSecond = 100 // USER_HZ on Linux
	var sum float64
	for _, i := range idx {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, fmt.Errorf("malformed stat field %d: %q", i, f[i])
		}
		sum += v
	}
	return sum / perSecond, nil
}

// Tables whose size is shared by all our devices in a room (per member),
// and those kept per device of ours (per own device).
var (
	sharedTables = []string{"dmls_room", "dmls_epoch", "dmls_commit_event", "room_member_event",
		"room_log", "user_mls_devices", "dmls_left_out"}
	deviceTables = []string{"puppet", "puppet_device", "key_package", "key_package_batch",
		"dmls_epoch_private", "delivery_cursor", "bot_puppet"}
)

// StateSizes measures the tables with pg_total_relation_size (heap,
// indexes and TOAST) and returns bytes per member and per own device.
func StateSizes(ctx context.Context, db *pgxpool.Pool, members, devices int) (perMember, perDevice float64, tables map[string]int64, err error) {
	tables = map[string]int64{}
	var shared, own int64
	for _, group := range []struct {
		names []string
		sum   *int64
	}{{sharedTables, &shared}, {deviceTables, &own}} {
		for _, t := range group.names {
			var n int64
			if err := db.QueryRow(ctx, `SELECT pg_total_relation_size($1::regclass)`, t).Scan(&n); err != nil {
				return 0, 0, nil, fmt.Errorf("size of %s: %w", t, err)
			}
			tables[t] = n
			*group.sum += n
		}
	}
	if members > 0 {
		perMember = float64(shared) / float64(members)
	}
	if devices > 0 {
		perDevice = float64(own) / float64(devices)
	}
	return perMember, perDevice, tables, nil
}

// logTables hold the puppets' logs: their own rows, and the rooms' logs
// of messages with the spans that stand for them (package groups).
// room_log, which numbers the rooms for them, is a shared table: the
// membership record names rooms by its numbers too.
var logTables = []string{"delivery", "room_entry", "delivery_span"}

// LogSizes measures the log tables with pg_total_relation_size, adds
// them to tables, and returns their bytes per entry of every puppet's log
// (delivery_cursor's last_seq, summed).
func LogSizes(ctx context.Context, db *pgxpool.Pool, tables map[string]int64) (perEntry float64, err error) {
	var sum int64
	for _, t := range logTables {
		var n int64
		if err := db.QueryRow(ctx, `SELECT pg_total_relation_size($1::regclass)`, t).Scan(&n); err != nil {
			return 0, fmt.Errorf("size of %s: %w", t, err)
		}
		tables[t] = n
		sum += n
	}
	entries, err := logEntries(ctx, db)
	if err != nil || entries == 0 {
		return 0, err
	}
	return float64(sum) / float64(entries), nil
}

// Compact rewrites the tables that StateSizes measures (VACUUM FULL),
// so that their sizes are those of the rows they hold. Deleted and
// updated rows leave space that PostgreSQL reuses for later rows but does
// not return: after retention drops epochs, pg_total_relation_size still
// counts them until the space is reused. Each table is locked while it is
// rewritten.
func Compact(ctx context.Context, db *pgxpool.Pool) error {
	for _, t := range slices.Concat(sharedTables, deviceTables) {
		if _, err := db.Exec(ctx, "VACUUM FULL "+pgx.Identifier{t}.Sanitize()); err != nil {
			return fmt.Errorf("compact %s: %w", t, err)
		}
	}
	return nil
}

// AtRest measures the state sizes of a quiet service into res: it waits
// until every room's group holds one epoch, or until wait passed without
// one dropped (a superseded epoch is kept for groups.epoch_linger, and how
// many a room still held when the run ended varies from run to run: 1.1
// to 2.0 epochs a room at 1,000 puppets in rooms of 10), then compacts and
// measures again. Rows that only processing.retention deletes (the
// membership events before a member's current one) are still counted;
// AgedBytesPerMember counts without them (Aged).
func AtRest(ctx context.Context, res *Result, db *pgxpool.Pool, wait time.Duration) error {
	var epochs, rooms int64
	err := settle(ctx, wait, time.Second, func() (bool, int64, error) {
		if err := db.QueryRow(ctx, `SELECT count(*), count(DISTINCT room_id) FROM dmls_epoch`).Scan(&epochs, &rooms); err != nil {
			return false, 0, fmt.Errorf("epochs at rest: %w", err)
		}
		return epochs <= rooms, -epochs, nil
	})
	if err != nil && !errors.Is(err, errStalled) {
		return err
	}
	if rooms > 0 {
		res.RestEpochsPerRoom = float64(epochs) / float64(rooms)
	}
	if err := Compact(ctx, db); err != nil {
		return err
	}
	res.RestBytesPerMember, res.RestBytesPerOwnDevice, res.RestTables, err = StateSizes(ctx, db, res.Members, res.Devices)
	if err != nil {
		return err
	}
	res.RestMemberParts, err = MemberParts(ctx, db, res.Members)
	return err
}

// Aged measures the bytes per member once processing.retention (7 days
// by default) has dropped the membership events before each member's
// current one, which it keeps only for membership at an older event
// (database.Retention): it deletes them as retention would, compacts the
// table and measures again. It destroys the service's record of those
// events: for a throwaway service (the load test's), never the command's.
func Aged(ctx context.Context, res *Result, db *pgxpool.Pool) error {
	if _, err := db.Exec(ctx, `DELETE FROM room_member_event WHERE NOT current`); err != nil {
		return fmt.Errorf("age the membership record: %w", err)
	}
	if _, err := db.Exec(ctx, `VACUUM FULL room_member_event`); err != nil {
		return fmt.Errorf("compact room_member_event: %w", err)
	}
	var err error
	res.AgedBytesPerMember, _, _, err = StateSizes(ctx, db, res.Members, res.Devices)
	return err
}

// EpochParts measures the live bytes of dmls_epoch's parts as stored
// (pg_column_size: after compression, before page and index overhead),
// and counts its rows: which part of a retained epoch dominates the
// per-member state. Its keys are the column names and "rows".
func EpochParts(ctx context.Context, db *pgxpool.Pool) (map[string]int64, error) {
	var rows, static, init, secrets, commit int64
	err := db.QueryRow(ctx, `SELECT count(*), coalesce(sum(pg_column_size(static)), 0),
		coalesce(sum(pg_column_size(init)), 0), coalesce(sum(pg_column_size(secrets)), 0),
		coalesce(sum(pg_column_size(commit)), 0) FROM dmls_epoch`).Scan(&rows, &static, &init, &secrets, &commit)
	if err != nil {
		return nil, fmt.Errorf("sizes of dmls_epoch's parts: %w", err)
	}
	return map[string]int64{"rows": rows, "static": static, "init": init, "secrets": secrets, "commit": commit}, nil
}

// Counter returns the sum of a Prometheus counter's samples at url, of
// those whose labels include every one of labels (each name="value").
func Counter(ctx context.Context, url, name string, labels ...string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		metric, _, _ := strings.Cut(line, " ")
		metric, set, _ := strings.Cut(metric, "{")
		if metric != name || !hasLabels(strings.TrimSuffix(set, "}"), labels) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += v
		}
	}
	return total, nil
}

// hasLabels reports whether the label set of a sample (a="x",b="y")
// includes each of labels.
func hasLabels(set string, labels []string) bool {
	have := strings.Split(set, ",")
	for _, l := range labels {
		if !slices.Contains(have, l) {
			return false
		}
	}
	return true
}

// DeviceParts measures where a device's bytes go: ColumnParts of the
// per-device tables, divided by devices.
func DeviceParts(ctx context.Context, db *pgxpool.Pool, devices int) (map[string]int64, error) {
	return ColumnParts(ctx, db, deviceTables, devices)
}

// MemberParts measures where a member's bytes go: ColumnParts of the
// shared tables, divided by members.
func MemberParts(ctx context.Context, db *pgxpool.Pool, members int) (map[string]int64, error) {
	return ColumnParts(ctx, db, sharedTables, members)
}

// ColumnParts measures, for each of tables, the live bytes of each
// column as stored (pg_column_size: after compression, before page
// overhead) and of its indexes (pg_indexes_size), divided by n and
// rounded. Its keys are "table.column" and "table.indexes". Call it after
// Compact, or the indexes count dead entries too.
func ColumnParts(ctx context.Context, db *pgxpool.Pool, tables []string, n int) (map[string]int64, error) {
	parts := map[string]int64{}
	if n <= 0 {
		return parts, nil
	}
	for _, t := range tables {
		rows, err := db.Query(ctx, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, t)
		if err != nil {
			return nil, fmt.Errorf("columns of %s: %w", t, err)
		}
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("columns of %s: %w", t, err)
		}
		sums := make([]string, len(cols))
		for i, c := range cols {
			sums[i] = "coalesce(sum(pg_column_size(" + pgx.Identifier{c}.Sanitize() + ")), 0)"
		}
		sums = append(sums, "pg_indexes_size($1::regclass)")
		vals := make([]int64, len(sums))
		dest := make([]any, len(sums))
		for i := range vals {
			dest[i] = &vals[i]
		}
		q := "SELECT " + strings.Join(sums, ", ") + " FROM " + pgx.Identifier{t}.Sanitize()
		if err := db.QueryRow(ctx, q, t).Scan(dest...); err != nil {
			return nil, fmt.Errorf("column sizes of %s: %w", t, err)
		}
		each := func(v int64) int64 { return (v + int64(n)/2) / int64(n) }
		for i, c := range cols {
			parts[t+"."+c] = each(vals[i])
		}
		parts[t+".indexes"] = each(vals[len(cols)])
	}
	return parts, nil
}

// Durability returns PostgreSQL's settings that decide whether a commit
// is on disk when it returns, as "fsync=<on|off> synchronous_commit=<…>".
// A figure taken with either off (a throwaway test cluster) counts
// commits that a power cut could lose, and must say so.
func Durability(ctx context.Context, db *pgxpool.Pool) (string, error) {
	var fsync, syncCommit string
	if err := db.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('synchronous_commit')`).
		Scan(&fsync, &syncCommit); err != nil {
		return "", fmt.Errorf("read PostgreSQL's durability settings: %w", err)
	}
	return "fsync=" + fsync + " synchronous_commit=" + syncCommit, nil
}
