package keys

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the package's instruments.
type Metrics struct {
	// Stock is each device's KeyPackages on the homeserver, as last
	// counted; alert on Stock < LowWater.
	Stock    *prometheus.GaugeVec
	LowWater prometheus.Gauge
	// BelowLowWater counts checks that found a device below low water.
	BelowLowWater prometheus.Counter
	// Generated and Uploaded count KeyPackages made and accepted by the
	// homeserver, by kind (one_time or last_resort).
	Generated *prometheus.CounterVec
	Uploaded  *prometheus.CounterVec
	// ClaimedByOthers counts our KeyPackages claimed by others, as the
	// homeserver's counts show.
	ClaimedByOthers prometheus.Counter
	// TopUps counts top-ups; LastResortReplaced replacements of a used
	// or expiring last-resort KeyPackage, by why.
	TopUps             prometheus.Counter
	LastResortReplaced *prometheus.CounterVec
	// Claimed counts KeyPackages of others we claimed and accepted;
	// Refused those refused, by reason.
	Claimed prometheus.Counter
	Refused *prometheus.CounterVec
	// CrossSigned counts devices whose cross-signing signature was
	// uploaded.
	CrossSigned prometheus.Counter
	// CrossSignRequests counts signature uploads (one signs up to 100 of
	// a puppet's devices).
	CrossSignRequests prometheus.Counter
	// CrossSignRefused counts cross-signing signatures the homeserver
	// refused (each device is tried again).
	CrossSignRefused prometheus.Counter
	// UnreadableBatches counts stored KeyPackage batches that did not
	// open or decode when a Welcome was looked up in them; they are
	// skipped, and their KeyPackages cannot be used.
	UnreadableBatches prometheus.Counter
	// UnreadableLastResort counts current last-resort KeyPackages that
	// did not open or derive when looked up or replaced; they cannot be
	// used, and are dropped when replaced.
	UnreadableLastResort prometheus.Counter
}

// NewMetrics creates the instruments and registers them in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Stock: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mlsas_keys_key_packages_stock",
			Help: "KeyPackages of a device held by the homeserver as one-time keys, as last counted."}, []string{"user_id", "device_id"}),
		LowWater: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mlsas_keys_low_water",
			Help: "The configured low-water mark (keys.low_water); alert on mlsas_keys_key_packages_stock below it."}),
		BelowLowWater: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_keys_below_low_water_total",
			Help: "Checks that found a device's stock below the low-water mark."}),
		Generated: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mlsas_keys_key_packages_generated_total",
			Help: "KeyPackages generated, by kind (one_time, last_resort)."}, []string{"kind"}),
		Uploaded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mlsas_keys_key_packages_uploaded_total",
			Help: "KeyPackages the homeserver accepted, by kind (one_time, last_resort)."}, []string{"kind"}),
		ClaimedByOthers: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_keys_key_packages_claimed_by_others_total",
			Help: "Our KeyPackages claimed by others, as the homeserver's counts show."}),
		TopUps: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_keys_top_ups_total",
			Help: "Top-ups of a device's KeyPackage stock."}),
		LastResortReplaced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mlsas_keys_last_resort_replaced_total",
			Help: "Last-resort KeyPackages replaced, by why (used, consumed, expiring)."}, []string{"why"}),
		Claimed: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_keys_claimed_total",
			Help: "KeyPackages of other devices claimed and verified."}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mlsas_keys_claims_refused_total",
			Help: "Claims of other devices' KeyPackages refused, by reason."}, []string{"reason"}),
		CrossSigned: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_keys_devices_cross_signed_total",
			Help: "Devices whose self-signing signature the homeserver accepted."}),
		CrossSignRequests: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_keys_cross_sign_requests_total",
			Help: "Signature uploads cross-signing our devices (each signs up to 100 of one puppet's devices)."}),
		CrossSignRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_keys_cross_sign_refused_total",
			Help: "Cross-signing signatures of our devices that the homeserver refused (each is tried again)."}),
		UnreadableBatches: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_keys_key_package_batches_unreadable_total",
			Help: "Stored batches of our KeyPackages that did not open or decode when looked up (skipped; see the log)."}),
		UnreadableLastResort: prometheus.NewCounter(prometheus.CounterOpts{Name: "mlsas_keys_last_resort_unreadable_total",
			Help: "Our stored last-resort KeyPackages that did not open or derive (unusable; see the log)."}),
	}
	reg.MustRegister(m.Stock, m.LowWater, m.BelowLowWater, m.Generated, m.Uploaded, m.ClaimedByOthers, m.TopUps,
		m.LastResortReplaced, m.Claimed, m.Refused, m.CrossSigned, m.CrossSignRequests, m.CrossSignRefused, m.UnreadableBatches,
		m.UnreadableLastResort)
	return m
}
