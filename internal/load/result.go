package load

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Result is what one run measured.
type Result struct {
	Mode      string  `json:"mode"`
	Puppets   int     `json:"puppets"`
	Rooms     int     `json:"rooms"`
	Members   int     `json:"members"` // room memberships in all
	Devices   int     `json:"own_devices"`
	Messages  int     `json:"messages"`  // messages sent
	Sent      int     `json:"sent"`      // deliveries expected (a message to each other member)
	Delivered int     `json:"delivered"` // deliveries seen
	Seconds   float64 `json:"seconds"`   // from the first send to the last delivery
	MsgsPerS  float64 `json:"msgs_per_s"`
	// SteadyMsgsPerS is the rate between the tenth and the ninetieth
	// percentile of the messages' completion times (intake mode): the
	// service's pace without the run's start and tail (steadyRate).
	SteadyMsgsPerS float64 `json:"steady_msgs_per_s,omitempty"`
	P50ms          float64 `json:"p50_ms"`
	P99ms          float64 `json:"p99_ms"`
	CommitsPS      float64 `json:"commits_per_s"`
	Commits        int     `json:"commits"`
	// CommitMs is the mean time our commits took in their work items
	// during the run (synapse mode, mlsas_dmls_commit_seconds): from the
	// plan, KeyPackage claims included, to every device of ours holding
	// the new epoch and the commit queued to send (the room's loading
	// and the transaction's commit not included).
	CommitMs float64 `json:"commit_ms_mean,omitempty"`
	RSSMB    float64 `json:"rss_mb"`
	CPUPer1k float64 `json:"cpu_s_per_1000_msgs"`
	// DBCPUPer1k is PostgreSQL's CPU (intake mode, if measured: 0 if not).
	DBCPUPer1k float64 `json:"db_cpu_s_per_1000_msgs"`
	Setup      float64 `json:"setup_seconds"`
	// Durability is PostgreSQL's fsync and synchronous_commit
	// (Durability): with either off, "durable" meant committed, not
	// flushed to disk.
	Durability string `json:"pg_durability,omitempty"`

	BytesPerMember    float64          `json:"bytes_per_member"`
	BytesPerOwnDevice float64          `json:"bytes_per_own_device"`
	Tables            map[string]int64 `json:"table_bytes"`
	// The same after Compact: the rows' size without the space that
	// deleted and updated rows left.
	CompactBytesPerMember    float64          `json:"compact_bytes_per_member"`
	CompactBytesPerOwnDevice float64          `json:"compact_bytes_per_own_device"`
	CompactTables            map[string]int64 `json:"compact_table_bytes"`
	// LogBytesPerEntry is the puppets' logs' bytes (LogSizes) per entry
	// of every log: a message is stored once in its room's log, and
	// counts an entry for each puppet it went to.
	LogBytesPerEntry float64 `json:"log_bytes_per_entry"`
	// EpochParts are dmls_epoch's live bytes by part (EpochParts).
	EpochParts map[string]int64 `json:"epoch_part_bytes"`
	// DeviceParts are the per-device tables' bytes per own device by
	// column and indexes, after Compact (DeviceParts).
	DeviceParts map[string]int64 `json:"device_part_bytes,omitempty"`
	// The same again at rest (AtRest): after Compact, once each room's
	// group held one epoch or the wait for it ended. RestEpochsPerRoom
	// says which.
	RestBytesPerMember    float64          `json:"rest_bytes_per_member,omitempty"`
	RestBytesPerOwnDevice float64          `json:"rest_bytes_per_own_device,omitempty"`
	RestEpochsPerRoom     float64          `json:"rest_epochs_per_room,omitempty"`
	RestTables            map[string]int64 `json:"rest_table_bytes,omitempty"`
	// RestMemberParts are the shared tables' bytes per member by column
	// and indexes, at rest (MemberParts).
	RestMemberParts map[string]int64 `json:"rest_member_part_bytes,omitempty"`
	// AgedBytesPerMember is RestBytesPerMember once processing.retention
	// has dropped the superseded membership events (Aged): what a member
	// costs for good.
	AgedBytesPerMember float64 `json:"aged_bytes_per_member,omitempty"`
}

// Line is the one-line summary.
func (r *Result) Line() string {
	return fmt.Sprintf("load: mode=%s puppets=%d rooms=%d delivered=%d/%d msgs_per_s=%.0f p50_ms=%.0f p99_ms=%.0f rss_mb=%.0f bytes_per_member=%.0f bytes_per_own_device=%.0f",
		r.Mode, r.Puppets, r.Rooms, r.Delivered, r.Sent, r.MsgsPerS, r.P50ms, r.P99ms, r.RSSMB,
		r.BytesPerMember, r.BytesPerOwnDevice)
}

// Details is a second line with the rest of the figures.
func (r *Result) Details() string {
	line := fmt.Sprintf("load-details: mode=%s messages=%d seconds=%.1f commits=%d commits_per_s=%.2f cpu_s_per_1000_msgs=%.2f setup_s=%.0f members=%d own_devices=%d",
		r.Mode, r.Messages, r.Seconds, r.Commits, r.CommitsPS, r.CPUPer1k, r.Setup, r.Members, r.Devices)
	if r.CommitMs > 0 {
		line += fmt.Sprintf(" commit_ms_mean=%.0f", r.CommitMs)
	}
	if r.SteadyMsgsPerS > 0 {
		line += fmt.Sprintf(" steady_msgs_per_s=%.0f", r.SteadyMsgsPerS)
	}
	if r.DBCPUPer1k > 0 {
		line += fmt.Sprintf(" db_cpu_s_per_1000_msgs=%.2f", r.DBCPUPer1k)
	}
	if r.Durability != "" {
		line += " pg_" + strings.ReplaceAll(r.Durability, " ", " pg_")
	}
	if r.CompactTables != nil {
		line += fmt.Sprintf(" compact_bytes_per_member=%.0f compact_bytes_per_own_device=%.0f",
			r.CompactBytesPerMember, r.CompactBytesPerOwnDevice)
	}
	if r.LogBytesPerEntry > 0 {
		line += fmt.Sprintf(" log_bytes_per_entry=%.0f", r.LogBytesPerEntry)
	}
	if n := r.EpochParts["rows"]; n > 0 && r.Rooms > 0 {
		line += fmt.Sprintf(" epochs_per_room=%.1f", float64(n)/float64(r.Rooms))
	}
	if r.RestTables != nil {
		line += fmt.Sprintf(" rest_bytes_per_member=%.0f rest_bytes_per_own_device=%.0f rest_epochs_per_room=%.1f",
			r.RestBytesPerMember, r.RestBytesPerOwnDevice, r.RestEpochsPerRoom)
	}
	if r.AgedBytesPerMember > 0 {
		line += fmt.Sprintf(" aged_bytes_per_member=%.0f", r.AgedBytesPerMember)
	}
	return line
}

// WriteJSON writes r to path.
func (r *Result) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// steadyRate is the number of completion times between the tenth and
// the ninetieth percentile of done, divided by the time between them:
// the pace of a run that was fed at once, without its start (rooms loaded
// for the first time, workers starting on queues a few messages long) and
// its tail (the last rooms' short runs). It is 0 with fewer than ten
// times or when they are equal.
func steadyRate(done []time.Time) float64 {
	if len(done) < 10 {
		return 0
	}
	s := slices.Clone(done)
	slices.SortFunc(s, time.Time.Compare)
	lo, hi := len(s)/10, len(s)*9/10
	d := s[hi].Sub(s[lo]).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(hi-lo) / d
}

// latencies collects durations and reports percentiles in milliseconds.
type latencies []time.Duration

func (l latencies) percentile(q float64) float64 {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return float64(s[int(q*float64(len(s)-1))].Microseconds()) / 1000
}
