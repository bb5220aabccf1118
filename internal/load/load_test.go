package load

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLine(t *testing.T) {
	r := &Result{Mode: "intake", Puppets: 200, Rooms: 20, Delivered: 9, Sent: 10, MsgsPerS: 5123.4, P50ms: 12.4,
		P99ms: 80, RSSMB: 101.2, BytesPerMember: 290.2, BytesPerOwnDevice: 1900}
	want := regexp.MustCompile(`^load: mode=(synapse|intake) puppets=\d+ rooms=\d+ delivered=\d+/\d+ msgs_per_s=\d+ p50_ms=\d+ p99_ms=\d+ rss_mb=\d+ bytes_per_member=\d+ bytes_per_own_device=\d+$`)
	if got := r.Line(); !want.MatchString(got) {
		t.Fatalf("line %q does not have the issue's shape", got)
	}
}

func TestTracker(t *testing.T) {
	tr := newTracker()
	t0 := time.Now()
	tr.sent("a", 2, t0)
	tr.delivered("a", "@x:h", t0.Add(10*time.Millisecond))
	tr.delivered("a", "@x:h", t0.Add(20*time.Millisecond)) // a duplicate counts once
	tr.delivered("b", "@x:h", t0)                          // never sent
	tr.delivered("a", "@y:h", t0.Add(30*time.Millisecond))
	if exp, got := tr.counts(); exp != 2 || got != 2 {
		t.Fatalf("counts %d/%d, want 2/2", got, exp)
	}
	if p50 := tr.lat.percentile(0.5); p50 != 10 {
		t.Fatalf("p50 %v ms, want 10", p50)
	}
	if p99 := tr.lat.percentile(0.99); p99 != 10 && p99 != 30 {
		t.Fatalf("p99 %v ms", p99)
	}
}

func TestProcess(t *testing.T) {
	p := Process{PID: os.Getpid()}
	rss, err := p.PeakRSS()
	if err != nil || rss < 1<<20 {
		t.Fatalf("peak RSS %d, %v", rss, err)
	}
	if _, err := p.CPUSeconds(); err != nil {
		t.Fatal(err)
	}
	if _, err := (Process{PID: -1}).PeakRSS(); err == nil {
		t.Fatal("no error for a missing process")
	}
}

// TestTreeCPU: a child's CPU time counts while it runs and after it was
// waited for.
func TestTreeCPU(t *testing.T) {
	self := Process{PID: os.Getpid()}
	// Only the children's time: the test's own grows as it reads /proc.
	children := func() float64 {
		_, c, err := self.treeCPU()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	before := children()
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 10000000 ]; do i=$((i+1)); done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Until it is waited for, the child is counted as live (a zombie's
	// times stay in its stat); on a loaded machine it may take a while
	// to get a tenth of a second.
	live := 0.0
	for deadline := time.Now().Add(10 * time.Second); live < 0.1 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		live = children() - before
	}
	if live < 0.1 {
		t.Errorf("a busy live child counted %.2f s in 10 s", live)
	}
	cmd.Process.Kill()
	cmd.Wait() // killed
	used := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if got := children() - before; got < used.Seconds()-0.02 {
		t.Errorf("a waited-for child counted %.2f s, it used %.2f s", got, used.Seconds())
	}
	if _, err := (Process{PID: -1}).TreeCPUSeconds(); err == nil {
		t.Fatal("no error for a missing process")
	}
}

func TestSteadyRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var done []time.Time
	// A slow start (10 times in 0.9 s), a steady middle (80 times 1.25
	// ms apart, from mid) and a slow tail (10 times 200 ms apart, from
	// mid + 300 ms), in no order. The 10th time is mid and the 90th the
	// tail's first: 80 completions in 300 ms.
	for i := range 10 {
		done = append(done, t0.Add(time.Duration(i)*100*time.Millisecond))
	}
	mid := t0.Add(time.Second)
	for i := range 80 {
		done = append(done, mid.Add(time.Duration(i)*1250*time.Microsecond))
	}
	for i := range 10 {
		done = append(done, mid.Add(time.Duration(300+200*i)*time.Millisecond))
	}
	slices.Reverse(done)
	got := steadyRate(done)
	if want := 80 / 0.3; got < want*0.999 || got > want*1.001 {
		t.Fatalf("steady rate %.1f, want %.1f", got, want)
	}
	if r := steadyRate(done[:9]); r != 0 {
		t.Fatalf("steady rate of 9 times %.1f, want 0", r)
	}
	same := make([]time.Time, 20)
	if r := steadyRate(same); r != 0 {
		t.Fatalf("steady rate of equal times %.1f, want 0", r)
	}
}

// TestDetailsSayWhatWasMeasured: each optional figure appears in the
// details line when measured, and is not named when not.
func TestDetailsSayWhatWasMeasured(t *testing.T) {
	for _, c := range []struct {
		name     string
		measured Result
		want     string
		absent   string // in the details of a result without the figure
	}{
		{"durability", Result{Durability: "fsync=off synchronous_commit=off"}, " pg_fsync=off pg_synchronous_commit=off", "pg_"},
		{"log bytes", Result{LogBytesPerEntry: 41.6}, " log_bytes_per_entry=42", "log_bytes"},
		{"at rest", Result{RestTables: map[string]int64{}, RestBytesPerMember: 970.4, RestBytesPerOwnDevice: 1800, RestEpochsPerRoom: 1},
			" rest_bytes_per_member=970 rest_bytes_per_own_device=1800 rest_epochs_per_room=1.0", "rest_"},
		{"aged", Result{AgedBytesPerMember: 803.6}, " aged_bytes_per_member=804", "aged_"},
	} {
		r := c.measured
		r.Mode, r.Messages = "intake", 10
		if got := r.Details(); !strings.Contains(got, c.want) {
			t.Errorf("%s: details %q do not contain %q", c.name, got, c.want)
		}
		if got := (&Result{Mode: "intake", Messages: 10}).Details(); strings.Contains(got, c.absent) {
			t.Errorf("%s: details %q name it, not measured", c.name, got)
		}
	}
}

// TestSettle: a wait goes on while the mark rises, however long in all,
// and ends with errStalled once it stops rising for the timeout.
func TestSettle(t *testing.T) {
	const timeout, interval = 200 * time.Millisecond, 5 * time.Millisecond
	failed := errors.New("poll failed")
	tests := []struct {
		name  string
		poll  func(call int) (bool, int64, error)
		want  error
		calls int // at least
	}{
		{"done at once", func(int) (bool, int64, error) { return true, 0, nil }, nil, 1},
		// 100 polls 5 ms apart outlast the timeout more than twice:
		// only the rising mark keeps the wait going.
		{"rising", func(c int) (bool, int64, error) { return c == 100, int64(c), nil }, nil, 100},
		{"falling count", func(c int) (bool, int64, error) { return c == 100, -int64(1000 - c), nil }, nil, 100},
		{"stalled", func(c int) (bool, int64, error) { return false, min(int64(c), 5), nil }, errStalled, 6},
		{"error", func(c int) (bool, int64, error) { return false, 0, failed }, failed, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := settle(context.Background(), timeout, interval, func() (bool, int64, error) {
				calls++
				return tt.poll(calls)
			})
			if !errors.Is(err, tt.want) || calls < tt.calls {
				t.Errorf("settle: %v after %d polls, want %v after at least %d", err, calls, tt.want, tt.calls)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := settle(ctx, timeout, interval, func() (bool, int64, error) { return false, 0, nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("settle with its context done: %v", err)
	}
}
