package config

import (
	"time"
)

// BotAPI configures the bots' own HTTP API (package botapi): its
// listener, the limits it puts on each bot, and webhook delivery.
type BotAPI struct {
	Enabled      bool   `yaml:"enabled"`
	Hostname     string `yaml:"hostname"`
	Port         int    `yaml:"port"`
	MaxBodyBytes int64  `yaml:"max_body_bytes"`
	// RateLimit is each bot's sustained requests per second, RateBurst
	// how many it may make at once above that.
	RateLimit float64 `yaml:"rate_limit"`
	RateBurst int     `yaml:"rate_burst"`
	// MaxStreams bounds a bot's event streams open at once.
	MaxStreams int      `yaml:"max_streams"`
	Poll       Duration `yaml:"poll"`
	Keepalive  Duration `yaml:"keepalive"`
	// RequestTimeout bounds one request other than an event stream.
	RequestTimeout    Duration `yaml:"request_timeout"`
	WebhookAttempts   int      `yaml:"webhook_attempts"`
	WebhookBackoff    Duration `yaml:"webhook_backoff"`
	WebhookMaxBackoff Duration `yaml:"webhook_max_backoff"`
	WebhookTimeout    Duration `yaml:"webhook_timeout"`
	WebhookWorkers    int      `yaml:"webhook_workers"`
}

func defaultBotAPI() BotAPI {
	return BotAPI{Hostname: "0.0.0.0", Port: 29341, MaxBodyBytes: 256 << 10, RateLimit: 50, RateBurst: 100,
		MaxStreams: 20, Poll: Duration(time.Second), Keepalive: Duration(15 * time.Second),
		RequestTimeout: Duration(time.Minute), WebhookAttempts: 10, WebhookBackoff: Duration(time.Second),
		WebhookMaxBackoff: Duration(5 * time.Minute), WebhookTimeout: Duration(10 * time.Second), WebhookWorkers: 4}
}

// validateBotAPI checks the botapi section (also when it is disabled, so
// that enabling it later does not reveal old mistakes).
func (c *Config) validateBotAPI() error {
	b := c.BotAPI
	if b.Hostname == "" {
		return keyErr("botapi.hostname", "missing (0.0.0.0 listens on every interface)")
	}
	ints := []struct {
		key           string
		value         int64
		lowest, limit int64
	}{
		{"botapi.port", int64(b.Port), 1, 65535},
		{"botapi.max_body_bytes", b.MaxBodyBytes, 1 << 10, 64 << 20},
		{"botapi.rate_burst", int64(b.RateBurst), 1, 1_000_000},
		{"botapi.max_streams", int64(b.MaxStreams), 1, 100_000},
		{"botapi.webhook_attempts", int64(b.WebhookAttempts), 1, 1000},
		{"botapi.webhook_workers", int64(b.WebhookWorkers), 1, 256},
	}
	for _, v := range ints {
		if v.value < v.lowest || v.value > v.limit {
			return keyErr(v.key, "must be between %d and %d, got %d", v.lowest, v.limit, v.value)
		}
	}
	if b.Enabled && b.Port == c.AppService.Port && (b.Hostname == c.AppService.Hostname || b.Hostname == "0.0.0.0" || c.AppService.Hostname == "0.0.0.0") {
		return keyErr("botapi.port", "must differ from appservice.port (%d): the bot API has its own listener", b.Port)
	}
	if !(b.RateLimit > 0 && b.RateLimit <= 1_000_000) {
		return keyErr("botapi.rate_limit", "must be more than 0 and at most 1000000 requests per second, got %v", b.RateLimit)
	}
	for _, d := range []struct {
		key   string
		value Duration
		min   time.Duration
	}{
		{"botapi.poll", b.Poll, 10 * time.Millisecond},
		{"botapi.keepalive", b.Keepalive, time.Second},
		{"botapi.request_timeout", b.RequestTimeout, time.Second},
		{"botapi.webhook_backoff", b.WebhookBackoff, 10 * time.Millisecond},
		{"botapi.webhook_max_backoff", b.WebhookMaxBackoff, b.WebhookBackoff.D()},
		{"botapi.webhook_timeout", b.WebhookTimeout, 100 * time.Millisecond},
	} {
		if d.value.D() < d.min {
			return keyErr(d.key, "must be at least %s, got %s", d.min, d.value.D())
		}
	}
	return nil
}
