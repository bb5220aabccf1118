package appservice

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the instruments of intake and processing. They are
// registered in a registry the caller owns, never the global default one,
// so tests and several services in one process do not collide.
type Metrics struct {
	TransactionsReceived *prometheus.CounterVec
	TransactionsRejected *prometheus.CounterVec
	TransactionsSplit    prometheus.Counter
	HandoffTaken         *prometheus.CounterVec
	MalformedItems       prometheus.Counter
	KeyCountsUnchanged   prometheus.Counter
	ItemsQueued          *prometheus.CounterVec
	ItemsProcessed       *prometheus.CounterVec
	ItemsFailed          *prometheus.CounterVec
	ItemsParked          *prometheus.CounterVec
	RunEvents            *prometheus.CounterVec
	ItemSeconds          *prometheus.HistogramVec
	ItemDelaySeconds     prometheus.Histogram
	TimersRun            *prometheus.CounterVec
	TimersFailed         *prometheus.CounterVec
	IntakeBytesInFlight  prometheus.Gauge
	RetentionDeleted     *prometheus.CounterVec

	// Backlog gauges, sampled from the database.
	QueueItems       prometheus.Gauge
	QueueOldestAge   prometheus.Gauge
	QueuesBusy       prometheus.Gauge
	ParkedItems      prometheus.Gauge
	UnsplitTxns      prometheus.Gauge
	OutboxPending    prometheus.Gauge
	OutboxOldestAge  prometheus.Gauge
	TimersDue        prometheus.Gauge
	BacklogReadError prometheus.Counter
}

// NewMetrics creates the instruments and registers them in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	gauge := func(name, help string) prometheus.Gauge {
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		reg.MustRegister(g)
		return g
	}
	m := &Metrics{
		TransactionsReceived: counterVec("mlsas_transactions_received_total",
			"Appservice transactions acknowledged, by outcome: stored, duplicate (a retry of a stored one), reused_txn_id (a known txnId with a new body, stored as new).", "outcome"),
		TransactionsRejected: counterVec("mlsas_transactions_rejected_total",
			"Transaction requests refused before storing, by reason.", "reason"),
		TransactionsSplit: counter("mlsas_transactions_split_total",
			"Stored transactions split into work items."),
		HandoffTaken: counterVec("mlsas_handoff_taken_total",
			"Transactions the splitter split, by whether it found the intake's parse in the handoff (parsed) or parsed the stored body again (missed).", "outcome"),
		MalformedItems: counter("mlsas_transaction_malformed_items_total",
			"Malformed elements of transactions that were skipped."),
		KeyCountsUnchanged: counter("mlsas_key_counts_unchanged_total",
			"Devices' key counts in transactions not queued because they repeat what was queued last for the device."),
		ItemsQueued: counterVec("mlsas_work_items_queued_total",
			"Work items put on queues by the splitter, by kind.", "kind"),
		ItemsProcessed: counterVec("mlsas_work_items_processed_total",
			"Work items applied, by kind.", "kind"),
		ItemsFailed: counterVec("mlsas_work_item_failures_total",
			"Failed attempts at work items, by kind.", "kind"),
		ItemsParked: counterVec("mlsas_work_items_parked_total",
			"Work items set aside after failing too often, by kind.", "kind"),
		RunEvents: counterVec("mlsas_work_run_events_total",
			"Room events offered to the handlers as runs (inbound.RoomRunHandler), by outcome: applied (as one run), one_by_one (a handler declined the run or it failed, so its events were applied singly).", "outcome"),
		TimersRun: counterVec("mlsas_timers_run_total",
			"Timers run, by kind.", "kind"),
		TimersFailed: counterVec("mlsas_timer_failures_total",
			"Failed timer runs, by kind.", "kind"),
		RetentionDeleted: counterVec("mlsas_retention_deleted_rows_total",
			"Rows deleted by retention, by table.", "table"),
		BacklogReadError: counter("mlsas_backlog_read_errors_total",
			"Failed reads of the backlog for metrics and readiness."),
		IntakeBytesInFlight: gauge("mlsas_intake_bytes_in_flight",
			"Bytes of transaction bodies being received or stored."),
		QueueItems: gauge("mlsas_queue_items",
			"Inbound work items waiting (parked ones excluded)."),
		QueueOldestAge: gauge("mlsas_queue_oldest_age_seconds",
			"Age of the oldest unfinished inbound work: an unsplit transaction or a waiting item."),
		QueuesBusy: gauge("mlsas_queues_with_items",
			"Inbound queues (rooms, devices) that have items waiting."),
		ParkedItems: gauge("mlsas_parked_items",
			"Work items parked with an error, waiting for an operator (mls-appservice queue list)."),
		UnsplitTxns: gauge("mlsas_transactions_unsplit",
			"Stored transactions not yet split into work items."),
		OutboxPending: gauge("mlsas_outbox_pending",
			"Outbox rows neither sent nor given up."),
		OutboxOldestAge: gauge("mlsas_outbox_oldest_age_seconds",
			"Age of the oldest outbox row neither sent nor given up."),
		TimersDue: gauge("mlsas_timers_due",
			"Timers whose due time has passed."),
	}
	m.ItemSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mlsas_work_item_seconds",
		Help:    "Time to apply one work item, by kind.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
	}, []string{"kind"})
	m.ItemDelaySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "mlsas_work_item_delay_seconds",
		Help:    "Time from a work item's creation to its completion.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
	})
	reg.MustRegister(m.ItemSeconds, m.ItemDelaySeconds)
	return m
}
