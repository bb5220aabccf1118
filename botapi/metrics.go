package botapi

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the bot API's instruments.
type Metrics struct {
	Requests       *prometheus.CounterVec
	RequestSeconds *prometheus.HistogramVec
	StreamClients  prometheus.Gauge
	Streamed       prometheus.Counter
	Webhooks       *prometheus.CounterVec
	Lag            *prometheus.HistogramVec
	FanIn          prometheus.Counter
}

// NewMetrics creates the instruments and registers them in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mlsas_botapi_requests_total",
			Help: "Bot API requests, by route (the pattern, or 'unmatched') and status code."}, []string{"route", "code"}),
		RequestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mlsas_botapi_request_seconds",
			Help:    "Time to answer a bot API request (event streams excluded), by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}, []string{"route"}),
		StreamClients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mlsas_botapi_sse_clients",
			Help: "Event streams (GET /v1/events) open now."}),
		Streamed: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_botapi_sse_events_total",
			Help: "Events written to event streams."}),
		Webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mlsas_botapi_webhook_deliveries_total",
			Help: "Webhook delivery attempts, by result (delivered, http_error, network_error, parked)."}, []string{"result"}),
		Lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mlsas_botapi_delivery_lag_seconds",
			Help:    "Time from an event's delivery to a puppet to its reaching the bot, by way (sse, webhook).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 20)}, []string{"via"}),
		FanIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_botapi_events_logged_total",
			Help: "Entries of puppets' logs copied into their bots' event logs."}),
	}
	reg.MustRegister(m.Requests, m.RequestSeconds, m.StreamClients, m.Streamed, m.Webhooks, m.Lag, m.FanIn)
	return m
}
