package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole service configuration. Field comments live in
// config.example.yaml, which documents every key.
type Config struct {
	Homeserver Homeserver `yaml:"homeserver"`
	AppService AppService `yaml:"appservice"`
	Database   Database   `yaml:"database"`
	Processing Processing `yaml:"processing"`
	Outbox     Outbox     `yaml:"outbox"`
	Encryption Encryption `yaml:"encryption"`
	Keys       Keys       `yaml:"keys"`
	Groups     Groups     `yaml:"groups"`
	Media      Media      `yaml:"media"`
	BotAPI     BotAPI     `yaml:"botapi"`
	CSAPI      CSAPI      `yaml:"csapi"`
	Logging    Logging    `yaml:"logging"`
}

// Groups configures DMLS rooms (package groups).
type Groups struct {
	CommitGrace  Duration `yaml:"commit_grace"`
	CommitJitter Duration `yaml:"commit_jitter"`
	MaxEpochs    int      `yaml:"max_epochs"`
	MaxEpochAge  Duration `yaml:"max_epoch_age"`
	EpochLinger  Duration `yaml:"epoch_linger"`
	Wait         Duration `yaml:"wait"`
	Autojoin     string   `yaml:"autojoin"`
	SendTimeout  Duration `yaml:"send_timeout"`
	DeviceTTL    Duration `yaml:"device_list_ttl"`
	MaxHistory   int      `yaml:"max_history"`
	LateEvent    Duration `yaml:"late_event"`
	// StateCacheBytes bounds the memory of the decoded epoch state kept
	// across work items (estimated from its stored size); 0 keeps none.
	StateCacheBytes int64 `yaml:"state_cache_bytes"`
	// LogRetention is how long an entry stays in the puppets' logs (the
	// bot API's events, the façade's timelines); 0 keeps every entry.
	LogRetention Duration `yaml:"log_retention"`
}

type Homeserver struct {
	Address string `yaml:"address"`
	Domain  string `yaml:"domain"`
}

type AppService struct {
	Address      string `yaml:"address"`
	Hostname     string `yaml:"hostname"`
	Port         int    `yaml:"port"`
	ID           string `yaml:"id"`
	BotUsername  string `yaml:"bot_username"`
	UserPrefix   string `yaml:"user_prefix"`
	ASToken      string `yaml:"as_token"`
	HSToken      string `yaml:"hs_token"`
	MaxBodyBytes int64  `yaml:"max_body_bytes"`
	// MaxInFlightBytes bounds the bytes of transaction bodies being
	// received and stored at once.
	MaxInFlightBytes int64    `yaml:"max_in_flight_bytes"`
	WriteTimeout     Duration `yaml:"write_timeout"`
	ShutdownGrace    Duration `yaml:"shutdown_grace"`
	// MetricsAddress, if set, serves /metrics on its own address instead
	// of the appservice listener.
	MetricsAddress string `yaml:"metrics_address"`
	// Pprof serves Go's profiler (net/http/pprof, /debug/pprof/) on
	// MetricsAddress, which it requires: never on the homeserver's
	// listener.
	Pprof bool `yaml:"pprof"`
}

type Database struct {
	URI            string   `yaml:"uri"`
	MaxConns       int32    `yaml:"max_conns"`
	ConnectTimeout Duration `yaml:"connect_timeout"`
}

// Processing configures the work queues (DESIGN 3.2, 3.3, 3.6).
type Processing struct {
	Workers         int      `yaml:"workers"`
	BatchSize       int      `yaml:"batch_size"`
	MaxAttempts     int      `yaml:"max_attempts"`
	RetryBackoff    Duration `yaml:"retry_backoff"`
	MaxRetryBackoff Duration `yaml:"max_retry_backoff"`
	ItemTimeout     Duration `yaml:"item_timeout"`
	Poll            Duration `yaml:"poll"`
	ReadyBacklog    Duration `yaml:"ready_backlog"`
	Retention       Duration `yaml:"retention"`
	RetentionBatch  int      `yaml:"retention_batch"`
}

// Outbox configures sending to the homeserver.
type Outbox struct {
	Workers        int      `yaml:"workers"`
	RequestTimeout Duration `yaml:"request_timeout"`
}

// Encryption configures sealing of secrets at rest (DESIGN 8, package
// seal). Exactly one of Key and KeyFile gives the current master key.
type Encryption struct {
	Key     string   `yaml:"key"`
	KeyFile string   `yaml:"key_file"`
	OldKeys []string `yaml:"old_keys"`
}

// Keys configures the devices' MLS identities and KeyPackage stock
// (package keys).
type Keys struct {
	Suite           int      `yaml:"suite"`
	Stock           int      `yaml:"stock"`
	LowWater        int      `yaml:"low_water"`
	CheckInterval   Duration `yaml:"check_interval"`
	Lifetime        Duration `yaml:"lifetime"`
	LastResortGrace Duration `yaml:"last_resort_grace"`
}

// Media configures the offload of payloads too large for an event to
// the media repository (DESIGN 6 "Size"): the threshold that package groups
// applies, and the bounds of downloads (matrix.MediaConfig).
type Media struct {
	OffloadThreshold int64    `yaml:"offload_threshold"`
	MaxDownloadBytes int64    `yaml:"max_download_bytes"`
	DownloadTimeout  Duration `yaml:"download_timeout"`
	DownloadAttempts int      `yaml:"download_attempts"`
}

type Logging struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Error is a problem with one key of the configuration.
type Error struct {
	Key     string
	Problem string
}

func (e *Error) Error() string { return e.Key + ": " + e.Problem }

func keyErr(key, format string, args ...any) error {
	return &Error{Key: key, Problem: fmt.Sprintf(format, args...)}
}

// Load reads and parses the configuration at path and fills in defaults.
// It does not validate: call Validate (start-up) or ValidateForRegistration (-g).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data)
}

// Parse decodes YAML configuration. Unknown keys are errors: a misspelt
// key would otherwise silently fall back to its default.
func Parse(data []byte) (*Config, error) {
	cfg := Config{
		AppService: AppService{Hostname: "0.0.0.0", Port: 29340, ID: "mls", BotUsername: "mlsbot",
			UserPrefix: "mls_", MaxBodyBytes: 16 << 20, MaxInFlightBytes: 64 << 20,
			WriteTimeout: Duration(time.Minute), ShutdownGrace: Duration(10 * time.Second)},
		Database: Database{MaxConns: 10, ConnectTimeout: Duration(5 * time.Second)},
		Processing: Processing{Workers: 4, BatchSize: 64, MaxAttempts: 5,
			RetryBackoff: Duration(time.Second), MaxRetryBackoff: Duration(5 * time.Minute),
			ItemTimeout: Duration(2 * time.Minute), Poll: Duration(2 * time.Second),
			ReadyBacklog: Duration(5 * time.Minute), Retention: Duration(7 * 24 * time.Hour), RetentionBatch: 1000},
		Outbox: Outbox{Workers: 4, RequestTimeout: Duration(time.Minute)},
		Keys: Keys{Suite: 1, Stock: 50, LowWater: 20, CheckInterval: Duration(time.Hour),
			Lifetime: Duration(90 * 24 * time.Hour), LastResortGrace: Duration(7 * 24 * time.Hour)},
		Groups: Groups{CommitGrace: Duration(5 * time.Second), CommitJitter: Duration(2 * time.Second), MaxEpochs: 8,
			MaxEpochAge: Duration(24 * time.Hour), EpochLinger: Duration(time.Minute), Wait: Duration(2 * time.Minute), Autojoin: "same_homeserver",
			SendTimeout: Duration(30 * time.Second), DeviceTTL: Duration(time.Hour), MaxHistory: 256,
			LateEvent: Duration(5 * time.Second), StateCacheBytes: 64 << 20, LogRetention: Duration(30 * 24 * time.Hour)},
		Media: Media{OffloadThreshold: 48 << 10, MaxDownloadBytes: 64 << 20,
			DownloadTimeout: Duration(2 * time.Minute), DownloadAttempts: 4},
		BotAPI:  defaultBotAPI(),
		CSAPI:   defaultCSAPI(),
		Logging: Logging{Level: "info", Format: "auto"},
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse config: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return &cfg, nil
}

var (
	localpartPattern = regexp.MustCompile(`^[a-z0-9._=/+-]+$`)
	domainPattern    = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)
	tokenPattern     = regexp.MustCompile(`^[\x21-\x7e]{32,}$`)
)

func isPlaceholder(s string) bool {
	return strings.Contains(s, "CHANGE_ME") || strings.Contains(s, "example.com")
}

// ValidateForRegistration checks the keys that -g needs to write the
// registration: the addresses, the domain and the namespace. Nothing else
// (the database above all) has to be filled in yet.
func (c *Config) ValidateForRegistration() error {
	checks := []check{
		{"homeserver.address", c.Homeserver.Address, checkHTTPURL},
		{"homeserver.domain", c.Homeserver.Domain, checkDomain},
		{"appservice.address", c.AppService.Address, checkHTTPURL},
		{"appservice.id", c.AppService.ID, checkLocalpart},
		{"appservice.bot_username", c.AppService.BotUsername, checkLocalpart},
		{"appservice.user_prefix", c.AppService.UserPrefix, checkLocalpart},
	}
	if err := checkAll(checks); err != nil {
		return err
	}
	if c.AppService.Port < 1 || c.AppService.Port > 65535 {
		return keyErr("appservice.port", "must be between 1 and 65535, got %d", c.AppService.Port)
	}
	if strings.HasPrefix(c.AppService.BotUsername, c.AppService.UserPrefix) {
		return keyErr("appservice.bot_username", "must not start with appservice.user_prefix %q", c.AppService.UserPrefix)
	}
	return nil
}

type check struct {
	key, value string
	check      func(key, value string) error
}

func checkAll(checks []check) error {
	for _, ch := range checks {
		if ch.value == "" {
			return keyErr(ch.key, "missing")
		}
		if isPlaceholder(ch.value) {
			return keyErr(ch.key, "still the placeholder from the example config (%s)", redactedValue(ch.key, ch.value))
		}
		if err := ch.check(ch.key, ch.value); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks everything needed to run the service.
func (c *Config) Validate() error {
	if err := c.ValidateForRegistration(); err != nil {
		return err
	}
	if err := checkAll([]check{
		{"database.uri", c.Database.URI, checkDatabaseURI},
		{"logging.level", c.Logging.Level, oneOf("trace", "debug", "info", "warn", "error")},
		{"logging.format", c.Logging.Format, oneOf("auto", "pretty", "json")},
	}); err != nil {
		return err
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	for _, t := range []struct{ key, value string }{
		{"appservice.as_token", c.AppService.ASToken},
		{"appservice.hs_token", c.AppService.HSToken},
	} {
		switch {
		case t.value == "":
			return keyErr(t.key, "missing; run mls-appservice -g to generate the registration and tokens")
		case isPlaceholder(t.value):
			return keyErr(t.key, "still the placeholder; run mls-appservice -g to generate the registration and tokens")
		case !tokenPattern.MatchString(t.value):
			return keyErr(t.key, "must be at least 32 printable ASCII characters without spaces; run mls-appservice -g to generate it")
		}
	}
	if c.AppService.ASToken == c.AppService.HSToken {
		return keyErr("appservice.hs_token", "must differ from appservice.as_token")
	}
	if _, _, err := c.SealKeys(); err != nil {
		return err
	}
	if err := c.validateKeys(); err != nil {
		return err
	}
	if err := c.validateGroups(); err != nil {
		return err
	}
	if err := c.validateBotAPI(); err != nil {
		return err
	}
	return c.validateCSAPI()
}

func redactedValue(key, value string) string {
	if key == "database.uri" {
		if u, err := url.Parse(value); err == nil {
			return u.Redacted()
		}
		return "unparsable URI"
	}
	return value
}

func checkHTTPURL(key, value string) error {
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return keyErr(key, "must be an http:// or https:// URL, got %q", value)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return keyErr(key, "must be a plain URL without credentials, query or fragment, got %q", u.Redacted())
	}
	return nil
}

func checkDomain(key, value string) error {
	if !domainPattern.MatchString(value) {
		return keyErr(key, "must be the homeserver's server name (like matrix.org or localhost:8008), got %q", value)
	}
	return nil
}

func checkLocalpart(key, value string) error {
	if !localpartPattern.MatchString(value) {
		return keyErr(key, "must contain only a-z, 0-9 and ._=/+-, got %q", value)
	}
	return nil
}

func checkDatabaseURI(key, value string) error {
	u, err := url.Parse(value)
	if err != nil {
		return keyErr(key, "must be a postgres:// URI (it could not be parsed)")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return keyErr(key, "must be a postgres:// URI, got scheme %q", u.Scheme)
	}
	if strings.TrimPrefix(u.Path, "/") == "" {
		return keyErr(key, "must name a database, got %s", u.Redacted())
	}
	return nil
}

func oneOf(allowed ...string) func(key, value string) error {
	return func(key, value string) error {
		for _, a := range allowed {
			if value == a {
				return nil
			}
		}
		return keyErr(key, "must be one of %s, got %q", strings.Join(allowed, ", "), value)
	}
}

// validateLimits checks the numeric keys against their ranges.
func (c *Config) validateLimits() error {
	ints := []struct {
		key      string
		value    int64
		min, max int64
		why      string
	}{
		{"appservice.max_body_bytes", c.AppService.MaxBodyBytes, 1 << 10, 1 << 30, ""},
		{"appservice.max_in_flight_bytes", c.AppService.MaxInFlightBytes, c.AppService.MaxBodyBytes, 1 << 40,
			" (at least appservice.max_body_bytes, or no transaction could ever be received)"},
		{"database.max_conns", int64(c.Database.MaxConns), 2, 1000, " (intake and processing each need one)"},
		{"processing.workers", int64(c.Processing.Workers), 1, 256, ""},
		{"processing.batch_size", int64(c.Processing.BatchSize), 1, 10000, ""},
		{"processing.max_attempts", int64(c.Processing.MaxAttempts), 1, 1000, ""},
		{"processing.retention_batch", int64(c.Processing.RetentionBatch), 1, 1000000, ""},
		{"outbox.workers", int64(c.Outbox.Workers), 1, 256, ""},
		// Synapse holds at most 500 one-time keys per algorithm and device.
		{"keys.stock", int64(c.Keys.Stock), 1, 500, " (Synapse keeps at most 500 one-time keys per device and algorithm)"},
		{"keys.low_water", int64(c.Keys.LowWater), 0, int64(c.Keys.Stock) - 1, " (below keys.stock)"},
		// An event is at most 64 KiB including what the homeserver adds
		// (signatures, hashes, prev_events); 0 offloads every payload.
		{"media.offload_threshold", c.Media.OffloadThreshold, 0, 60 << 10,
			" bytes (an event, with what the homeserver adds to it, is at most 65536 bytes)"},
		// A commit in a sparse 10,000-member group is about 820 KB; the
		// largest download is held in memory.
		{"media.max_download_bytes", c.Media.MaxDownloadBytes, 1 << 20, 1 << 30, ""},
		{"media.download_attempts", int64(c.Media.DownloadAttempts), 1, 20, ""},
	}
	for _, v := range ints {
		if v.value < v.min || v.value > v.max {
			return keyErr(v.key, "must be between %d and %d%s, got %d", v.min, v.max, v.why, v.value)
		}
	}
	durations := []struct {
		key   string
		value Duration
		min   time.Duration
	}{
		{"appservice.write_timeout", c.AppService.WriteTimeout, time.Second},
		{"appservice.shutdown_grace", c.AppService.ShutdownGrace, 100 * time.Millisecond},
		{"database.connect_timeout", c.Database.ConnectTimeout, 100 * time.Millisecond},
		{"processing.retry_backoff", c.Processing.RetryBackoff, time.Millisecond},
		{"processing.max_retry_backoff", c.Processing.MaxRetryBackoff, c.Processing.RetryBackoff.D()},
		{"processing.item_timeout", c.Processing.ItemTimeout, time.Second},
		{"processing.poll", c.Processing.Poll, 10 * time.Millisecond},
		{"processing.ready_backlog", c.Processing.ReadyBacklog, time.Second},
		{"processing.retention", c.Processing.Retention, time.Minute},
		{"outbox.request_timeout", c.Outbox.RequestTimeout, time.Second},
		{"keys.check_interval", c.Keys.CheckInterval, time.Second},
		{"keys.lifetime", c.Keys.Lifetime, time.Hour},
		{"keys.last_resort_grace", c.Keys.LastResortGrace, 0},
		{"media.download_timeout", c.Media.DownloadTimeout, time.Second},
	}
	for _, d := range durations {
		if d.value.D() < d.min {
			return keyErr(d.key, "must be at least %s, got %s", d.min, d.value.D())
		}
	}
	if (c.Database.MaxConns) < int32(c.Processing.Workers+c.Outbox.Workers+2) {
		return keyErr("database.max_conns", "must be at least processing.workers + outbox.workers + 2 = %d (each worker holds a connection while it works, intake and the splitter need one each), got %d",
			c.Processing.Workers+c.Outbox.Workers+2, c.Database.MaxConns)
	}
	if c.AppService.MetricsAddress != "" {
		if _, _, err := net.SplitHostPort(c.AppService.MetricsAddress); err != nil {
			return keyErr("appservice.metrics_address", "must be host:port, got %q", c.AppService.MetricsAddress)
		}
	}
	if c.AppService.Pprof && c.AppService.MetricsAddress == "" {
		return keyErr("appservice.pprof", "needs appservice.metrics_address: the profiler is served only on its own listener, never on the homeserver's")
	}
	return nil
}

// validateGroups checks the groups section.
func (c *Config) validateGroups() error {
	g := c.Groups
	if err := oneOf("off", "same_homeserver", "any")("groups.autojoin", g.Autojoin); err != nil {
		return err
	}
	if g.MaxEpochs < 2 || g.MaxEpochs > 1000 {
		return keyErr("groups.max_epochs", "must be between 2 and 1000, got %d", g.MaxEpochs)
	}
	if g.StateCacheBytes < 0 || g.StateCacheBytes > 1<<40 {
		return keyErr("groups.state_cache_bytes", "must be between 0 and 1 TiB, got %d", g.StateCacheBytes)
	}
	if g.MaxHistory < 1 || g.MaxHistory > 100000 {
		return keyErr("groups.max_history", "must be between 1 and 100000, got %d", g.MaxHistory)
	}
	if r := g.LogRetention.D(); r != 0 && r < time.Hour {
		return keyErr("groups.log_retention", "must be 0 (keep every entry) or at least 1h, got %s", r)
	}
	if g.EpochLinger.D() < 0 || g.EpochLinger.D() > g.MaxEpochAge.D() {
		return keyErr("groups.epoch_linger", "must be between 0 and groups.max_epoch_age (%s), got %s", g.MaxEpochAge.D(), g.EpochLinger.D())
	}
	for _, d := range []struct {
		key   string
		value Duration
		min   time.Duration
	}{
		{"groups.commit_grace", g.CommitGrace, 0},
		{"groups.commit_jitter", g.CommitJitter, 0},
		{"groups.max_epoch_age", g.MaxEpochAge, time.Minute},
		{"groups.wait", g.Wait, time.Second},
		{"groups.send_timeout", g.SendTimeout, time.Second},
		{"groups.device_list_ttl", g.DeviceTTL, time.Second},
		{"groups.late_event", g.LateEvent, 0},
	} {
		if d.value.D() < d.min {
			return keyErr(d.key, "must be at least %s, got %s", d.min, d.value.D())
		}
	}
	return nil
}
