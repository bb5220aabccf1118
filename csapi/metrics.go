package csapi

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the façade's instruments.
type Metrics struct {
	Requests       *prometheus.CounterVec
	RequestSeconds *prometheus.HistogramVec
	Events         *prometheus.CounterVec
	HeldSeconds    prometheus.Histogram
	Malformed      *prometheus.CounterVec
}

// NewMetrics creates the instruments and registers them in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mlsas_csapi_requests_total",
			Help: "Client-server façade requests, by route (served, refused, or passthrough) and status code."},
			[]string{"route", "code"}),
		RequestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mlsas_csapi_request_seconds",
			Help:    "Time to answer a façade request, by route (long polls included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}, []string{"route"}),
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mlsas_csapi_events_total",
			Help: "Encrypted DMLS events in answers, by what the façade made of them: decrypted, undecryptable " +
				"(groups could not decrypt it), not_delivered (the hold ended first), commit_hidden, commit."},
			[]string{"result"}),
		HeldSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mlsas_csapi_held_seconds",
			Help:    "Time an answer was held for events not decrypted yet (only answers that were held).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		Malformed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mlsas_csapi_malformed_total",
			Help: "Malformed input, by where it came from (request, homeserver)."}, []string{"from"}),
	}
	reg.MustRegister(m.Requests, m.RequestSeconds, m.Events, m.HeldSeconds, m.Malformed)
	return m
}
