package matrix

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the instruments of requests to the homeserver.
type Metrics struct {
	OutboxSent     *prometheus.CounterVec
	OutboxFailures *prometheus.CounterVec
	OutboxSeconds  prometheus.Histogram
	MediaDownloads *prometheus.CounterVec
}

// NewMetrics creates the instruments and registers them in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		OutboxSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mlsas_outbox_sent_total",
			Help: "Outbox rows the homeserver accepted, by kind.",
		}, []string{"kind"}),
		OutboxFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mlsas_outbox_send_failures_total",
			Help: "Failed attempts to send an outbox row, by kind and whether the row was given up (permanent).",
		}, []string{"kind", "permanent"}),
		OutboxSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "mlsas_outbox_send_seconds",
			Help:    "Time of one successful request to the homeserver for an outbox row.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		MediaDownloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mlsas_media_downloads_total",
			Help: "Attachment downloads, by result: ok, or the reason they failed (tampered, bad_file, not_found, too_large, refused, unavailable, canceled).",
		}, []string{"result"}),
	}
	reg.MustRegister(m.OutboxSent, m.OutboxFailures, m.OutboxSeconds, m.MediaDownloads)
	return m
}
