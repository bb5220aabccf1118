package groups

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the instruments of DMLS rooms. Counters of what the
// service did (messages decrypted, commits applied, entries delivered)
// count once the work's transaction commits (inbound.Work.Count): a work
// item rolled back and tried again, or a batch whose commit failed, did
// nothing the first time. Counters of requests made to the homeserver
// (history fetched, media downloaded) count when they happen, as the
// requests did.
type Metrics struct {
	CommitsMade         prometheus.Counter
	CommitsApplied      prometheus.Counter
	CommitsRejected     *prometheus.CounterVec
	ForksSeen           prometheus.Counter
	ForksResolved       prometheus.Counter
	WelcomesSent        prometheus.Counter
	WelcomesJoined      prometheus.Counter
	WelcomesRefused     *prometheus.CounterVec
	MessagesSent        prometheus.Counter
	MessagesDecrypt     prometheus.Counter
	MessagesWaiting     prometheus.Counter
	Undecryptable       *prometheus.CounterVec
	NotAddressed        prometheus.Counter
	MalformedEvents     *prometheus.CounterVec
	LeftOut             prometheus.Counter
	OrphansRemoved      prometheus.Counter
	HistoryFetched      prometheus.Counter
	Backfilled          prometheus.Counter
	HistoryStopped      *prometheus.CounterVec
	GapEvents           *prometheus.CounterVec
	HoleChecks          *prometheus.CounterVec
	GraphRechecks       *prometheus.CounterVec
	OwnCommitsWithdrawn prometheus.Counter
	EpochsDropped       prometheus.Counter
	LogPruned           *prometheus.CounterVec
	MessagesResent      *prometheus.CounterVec
	OwnJoins            *prometheus.CounterVec
	MemberAudit         *prometheus.CounterVec
	ReconcilesDeferred  prometheus.Counter
	ReconcilesCoalesced prometheus.Counter
	MembershipSeeds     *prometheus.CounterVec
	DuplicateEvents     prometheus.Counter
	Delivered           *prometheus.CounterVec
	CommitSeconds       prometheus.Histogram
	DecryptSeconds      prometheus.Histogram
	MembershipToPlan    prometheus.Histogram
	Offloaded           *prometheus.CounterVec
	OffloadDownloads    *prometheus.CounterVec
}

// NewMetrics creates the instruments and registers them in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	vec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	hist := func(name, help string) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)})
		reg.MustRegister(h)
		return h
	}
	return &Metrics{
		CommitsMade:     counter("mlsas_dmls_commits_made_total", "Commits our devices made."),
		CommitsApplied:  counter("mlsas_dmls_commits_applied_total", "Commits of other devices applied (once per room for all our devices)."),
		CommitsRejected: vec("mlsas_dmls_commits_rejected_total", "Commits refused, by reason.", "reason"),
		ForksSeen:       counter("mlsas_dmls_forks_seen_total", "Times a room's graph came to hold more than one head."),
		ForksResolved:   counter("mlsas_dmls_forks_resolved_total", "Commits that resolved a fork (named other heads)."),
		WelcomesSent:    counter("mlsas_dmls_welcomes_sent_total", "Welcome to-device messages our commits sent, one per added device."),
		WelcomesJoined:  counter("mlsas_dmls_welcomes_joined_total", "Welcomes that joined one of our devices to a room's group."),
		WelcomesRefused: vec("mlsas_dmls_welcomes_refused_total", "Welcomes refused, by reason.", "reason"),
		MessagesSent:    counter("mlsas_dmls_messages_encrypted_total", "Application messages our puppets encrypted."),
		MessagesDecrypt: counter("mlsas_dmls_messages_decrypted_total", "Application messages decrypted (once per room)."),
		MessagesWaiting: counter("mlsas_dmls_messages_waited_total", "Events that had to wait for an epoch we did not hold yet."),
		Undecryptable:   vec("mlsas_dmls_messages_undecryptable_total", "Messages that could not be decrypted, by reason.", "reason"),
		NotAddressed:    counter("mlsas_dmls_messages_not_addressed_total", "Messages of epochs none of our devices is a member of (sent after our removal)."),
		MalformedEvents: vec("mlsas_dmls_malformed_events_total", "DMLS events or to-device messages that did not parse, by kind.", "kind"),
		LeftOut:         counter("mlsas_dmls_members_left_out_total", "Joined users left out of a group because they have no MLS device."),
		OrphansRemoved: counter("mlsas_dmls_orphans_removed_total",
			"Devices of ours that our commits removed from a group they were in without their keys (their Welcome never came), to add them again."),
		HistoryFetched: counter("mlsas_dmls_history_events_fetched_total", "Commit events fetched from the homeserver: after a join to learn the branch's history, and to backfill missed commits."),
		Backfilled: counter("mlsas_dmls_backfilled_commits_total",
			"Commits we missed, fetched from the homeserver along commit_event links and applied."),
		HistoryStopped: vec("mlsas_dmls_backfill_stopped_total",
			"Walks back along commit_event links that stopped before reaching an epoch we hold, by reason.", "reason"),
		ReconcilesDeferred: counter("mlsas_dmls_reconciles_deferred_total",
			"Membership changes whose commit was left to a reconcile after the room's queued events, so that a burst is one commit."),
		ReconcilesCoalesced: counter("mlsas_dmls_reconciles_coalesced_total",
			"Reconcile items that left the room's reconciliation to another queued behind them (the room was reconciled moments before)."),
		MembershipSeeds: vec("mlsas_dmls_membership_seeds_total",
			"Joins of our puppets, by whether the room's state was read to seed its membership (read: no other puppet of ours was joined) or not (skipped).", "outcome"),
		DuplicateEvents: counter("mlsas_dmls_duplicate_events_total",
			"Messages and membership events that arrived again after they were applied (from a hole in the timeline while their transaction was on its way; our own join, read back at once), not delivered again."),
		GapEvents: vec("mlsas_dmls_gap_events_total",
			"Events of a hole in the room's timeline that never came by transaction (after a federation partition), found by paging back and applied, by kind.", "kind"),
		HoleChecks: vec("mlsas_dmls_hole_checks_total",
			"Pagings back into the room's timeline to look for a hole, by what started one: skipped (a message stepped over its sender's earlier ones), late (a remote event came groups.late_event late), remote_commit.", "reason"),
		GraphRechecks: vec("mlsas_dmls_graph_rechecks_total",
			"Commits that the room's membership as events arrived would refuse, checked again against the membership at the commit's event in the room's graph, by outcome: accepted, refused, failed (the homeserver did not answer; refused).", "outcome"),
		EpochsDropped: counter("mlsas_dmls_epochs_dropped_total",
			"Epochs whose state retention deleted: every member moved on (committed or sent a message in a later epoch, or left) groups.epoch_linger ago, groups.max_epochs, or groups.max_epoch_age."),
		LogPruned: vec("mlsas_dmls_log_pruned_rows_total",
			"Rows of the puppets' logs that log retention deleted (older than groups.log_retention), by table: delivery_span, room_entry, delivery.", "table"),
		OwnCommitsWithdrawn: counter("mlsas_dmls_own_commits_withdrawn_total",
			"Commits of our devices taken back when their event came back: the membership at it in the room's graph refuses them, as the other members do."),
		MessagesResent: vec("mlsas_dmls_messages_resent_total",
			"Messages of ours sent in an epoch our device withdrew, sent again in the current epoch, by outcome: sent, no_device (lost to the others).", "outcome"),
		OwnJoins: vec("mlsas_dmls_own_joins_read_total",
			"Our puppets' join events read from the homeserver after accepting an invitation, by outcome: queued (not arrived yet), arrived, not_joined, unreadable, malformed.", "outcome"),
		MemberAudit: vec("mlsas_dmls_member_audit_total",
			"Membership audits of rooms (audit.go), by outcome: audited (rooms), queued (membership events the homeserver never sent), unreadable (state not read).", "outcome"),
		Delivered:      vec("mlsas_deliveries_total", "Entries appended to puppets' logs, by kind.", "kind"),
		CommitSeconds:  hist("mlsas_dmls_commit_seconds", "Time to make one commit (claims included) in its work item."),
		DecryptSeconds: hist("mlsas_dmls_decrypt_seconds", "Time to decrypt and deliver one application message."),
		MembershipToPlan: hist("mlsas_dmls_membership_to_commit_seconds",
			"Time from a membership event stored to its commit in the outbox."),
		Offloaded: vec("mlsas_dmls_offloaded_total",
			"Payloads (commit, welcome, group_info) uploaded to the media repository because their event would pass media.offload_threshold.", "kind"),
		OffloadDownloads: vec("mlsas_dmls_offload_downloads_total",
			"Downloads of offloaded payloads, by kind and result: ok, or the reason (tampered, bad_file, not_found, too_large, refused, unavailable, canceled).",
			"kind", "result"),
	}
}
