package load

import (
	"os"
	"regexp"
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
