package appservice

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the service's Prometheus instruments. They are registered
// in a registry the caller owns, never the global default one, so tests
// and several services in one process do not collide.
type Metrics struct {
	TransactionsReceived  *prometheus.CounterVec
	TransactionsRejected  *prometheus.CounterVec
	TransactionsProcessed prometheus.Counter
	TransactionsFailed    prometheus.Counter
	ProcessingSeconds     prometheus.Histogram
	QueueDelaySeconds     prometheus.Histogram
	MalformedItems        prometheus.Counter
	ItemsDispatched       *prometheus.CounterVec
	OutboxSent            prometheus.Counter
	OutboxFailures        prometheus.Counter
}

// NewMetrics creates the instruments and registers them in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		TransactionsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mlsas_transactions_received_total",
			Help: "Appservice transactions acknowledged, by outcome (stored, or duplicate of a stored txnId).",
		}, []string{"outcome"}),
		TransactionsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mlsas_transactions_rejected_total",
			Help: "Transaction requests refused before storing, by reason.",
		}, []string{"reason"}),
		TransactionsProcessed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mlsas_transactions_processed_total",
			Help: "Stored transactions whose effects were committed.",
		}),
		TransactionsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mlsas_transactions_failed_total",
			Help: "Processing attempts that failed and were rolled back (the transaction is retried), or bodies that could not be parsed at all.",
		}),
		ProcessingSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mlsas_transaction_processing_seconds",
			Help:    "Time to process one stored transaction, commit included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		QueueDelaySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mlsas_transaction_queue_delay_seconds",
			Help:    "Time from storing a transaction to committing its effects.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20),
		}),
		MalformedItems: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mlsas_transaction_malformed_items_total",
			Help: "Malformed elements of transactions that were skipped.",
		}),
		ItemsDispatched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mlsas_transaction_items_dispatched_total",
			Help: "Elements of transactions handled, by kind.",
		}, []string{"kind"}),
		OutboxSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mlsas_outbox_sent_total",
			Help: "Outgoing events the homeserver accepted.",
		}),
		OutboxFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mlsas_outbox_send_failures_total",
			Help: "Failed attempts to send an outgoing event.",
		}),
	}
	reg.MustRegister(m.OutboxSent, m.OutboxFailures, m.TransactionsReceived, m.TransactionsRejected, m.TransactionsProcessed,
		m.TransactionsFailed, m.ProcessingSeconds, m.QueueDelaySeconds, m.MalformedItems, m.ItemsDispatched)
	return m
}
