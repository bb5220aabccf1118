package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const valid = `
homeserver:
  address: http://127.0.0.1:8008
  domain: localhost
appservice:
  address: http://127.0.0.1:29340
  as_token: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
  hs_token: BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB
database:
  uri: postgres://mls:s3cret@localhost:5432/mls?sslmode=disable
encryption:
  key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
`

// edit returns valid with the value at path (dot-separated) replaced; a
// nil value deletes the key.
func edit(t *testing.T, path string, value any) []byte {
	t.Helper()
	var doc map[string]map[string]any
	if err := yaml.Unmarshal([]byte(valid), &doc); err != nil {
		t.Fatal(err)
	}
	section, key, _ := strings.Cut(path, ".")
	if doc[section] == nil {
		doc[section] = map[string]any{}
	}
	if value == nil {
		delete(doc[section], key)
	} else {
		doc[section][key] = value
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestValidConfigAndDefaults(t *testing.T) {
	cfg, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.AppService.Port != 29340 || cfg.AppService.UserPrefix != "mls_" || cfg.Logging.Format != "auto" ||
		cfg.AppService.MaxBodyBytes != 16<<20 || cfg.Database.MaxConns != 10 ||
		cfg.Media.OffloadThreshold != 49152 || cfg.Media.MaxDownloadBytes != 64<<20 ||
		cfg.Media.DownloadTimeout.D() != 2*time.Minute || cfg.Media.DownloadAttempts != 4 {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	tests := []struct {
		path  string
		value any
		want  string // substring of the one-line error
	}{
		{"homeserver.address", nil, "homeserver.address: missing"},
		{"homeserver.address", "https://matrix.example.com", "homeserver.address: still the placeholder"},
		{"homeserver.address", "ftp://hs", "homeserver.address: must be an http:// or https:// URL"},
		{"homeserver.address", "localhost:8008", "homeserver.address: must be an http:// or https:// URL"},
		{"homeserver.address", "http://user:pw@hs", "homeserver.address: must be a plain URL"},
		{"homeserver.domain", "example.com", "homeserver.domain: still the placeholder"},
		{"homeserver.domain", "bad domain", "homeserver.domain: must be the homeserver's server name"},
		{"appservice.address", "http://", "appservice.address: must be an http:// or https:// URL"},
		{"appservice.as_token", nil, "appservice.as_token: missing; run mls-appservice -g"},
		{"appservice.hs_token", "CHANGE_ME (run mls-appservice -g)", "appservice.hs_token: still the placeholder"},
		{"appservice.hs_token", "short", "appservice.hs_token: must be at least 32"},
		{"appservice.hs_token", "BBBBBBBBBBBBBBBB BBBBBBBBBBBBBBBBBBBBBBB", "appservice.hs_token: must be at least 32"},
		{"appservice.hs_token", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "appservice.hs_token: must differ"},
		{"appservice.port", 70000, "appservice.port: must be between 1 and 65535"},
		{"appservice.bot_username", "Bot!", "appservice.bot_username: must contain only"},
		{"appservice.bot_username", "mls_bot", "appservice.bot_username: must not start with"},
		{"appservice.max_body_bytes", 10, "appservice.max_body_bytes: must be between 1024 and"},
		{"appservice.max_in_flight_bytes", 1024, "appservice.max_in_flight_bytes: must be between 16777216 and"},
		{"appservice.shutdown_grace", "1ms", "appservice.shutdown_grace: must be at least 100ms"},
		{"appservice.metrics_address", "nonsense", "appservice.metrics_address: must be host:port"},
		{"appservice.pprof", true, "appservice.pprof: needs appservice.metrics_address"},
		{"database.uri", nil, "database.uri: missing"},
		{"database.uri", "mysql://x@y/z", "database.uri: must be a postgres:// URI"},
		{"database.uri", "postgres://x@y", "database.uri: must name a database"},
		{"database.uri", "postgres://mls:CHANGE_ME@localhost/mls", "database.uri: still the placeholder"},
		{"database.max_conns", 1, "database.max_conns: must be between 2 and 1000"},
		{"database.max_conns", 5, "database.max_conns: must be at least processing.workers + outbox.workers + 2 = 10"},
		{"processing.workers", 0, "processing.workers: must be between 1 and 256"},
		{"processing.max_attempts", 0, "processing.max_attempts: must be between 1 and 1000"},
		{"processing.retry_backoff", "0s", "processing.retry_backoff: must be at least 1ms"},
		{"processing.max_retry_backoff", "1ms", "processing.max_retry_backoff: must be at least 1s"},
		{"outbox.workers", 1000, "outbox.workers: must be between 1 and 256"},
		{"encryption.key", nil, "encryption.key: missing; run mls-appservice -g"},
		{"encryption.key", "CHANGE_ME (run mls-appservice -g)", "encryption.key: still the placeholder"},
		{"encryption.key", "c2hvcnQ", "encryption.key: must be base64 of 32 bytes"},
		{"encryption.key_file", "/nonexistent/key", "encryption.key_file: set together with encryption.key"},
		{"encryption.old_keys", []string{"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, "encryption.old_keys: key"},
		{"keys.suite", 4, "keys.suite: must be 1, 2 or 3"},
		{"keys.stock", 501, "keys.stock: must be between 1 and 500"},
		{"keys.low_water", 50, "keys.low_water: must be between 0 and 49"},
		{"keys.check_interval", "10ms", "keys.check_interval: must be at least 1s"},
		{"keys.check_interval", "2000h", "keys.check_interval: must be at most a quarter of keys.lifetime"},
		{"groups.epoch_linger", "-1s", "groups.epoch_linger: must be between 0 and groups.max_epoch_age (24h0m0s), got -1s"},
		{"groups.epoch_linger", "25h", "groups.epoch_linger: must be between 0 and groups.max_epoch_age"},
		{"media.offload_threshold", -1, "media.offload_threshold: must be between 0 and 61440 bytes"},
		{"media.offload_threshold", 65536, "media.offload_threshold: must be between 0 and 61440 bytes"},
		{"media.max_download_bytes", 1000, "media.max_download_bytes: must be between 1048576 and 1073741824"},
		{"media.download_attempts", 0, "media.download_attempts: must be between 1 and 20"},
		{"media.download_timeout", "10ms", "media.download_timeout: must be at least 1s"},
		{"botapi.port", 0, "botapi.port: must be between 1 and 65535"},
		{"botapi.rate_limit", 0, "botapi.rate_limit: must be more than 0"},
		{"botapi.rate_burst", 0, "botapi.rate_burst: must be between 1 and"},
		{"botapi.max_body_bytes", 10, "botapi.max_body_bytes: must be between 1024 and"},
		{"botapi.webhook_attempts", 0, "botapi.webhook_attempts: must be between 1 and 1000"},
		{"botapi.webhook_max_backoff", "1ms", "botapi.webhook_max_backoff: must be at least 1s"},
		{"botapi.poll", "1ms", "botapi.poll: must be at least 10ms"},
		{"logging.level", "loud", "logging.level: must be one of"},
		{"logging.format", "xml", "logging.format: must be one of"},
	}
	for _, tt := range tests {
		t.Run(tt.path+"="+strings.ReplaceAll(yamlString(tt.value), "/", "_"), func(t *testing.T) {
			cfg, err := Parse(edit(t, tt.path, tt.value))
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.Validate()
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			var ke *Error
			if !errors.As(err, &ke) || ke.Key != tt.path {
				t.Errorf("error %q does not name key %s", err, tt.path)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "CHANGE_ME@") {
				t.Errorf("error %q reveals a password", err)
			}
		})
	}
}

func yamlString(v any) string {
	if v == nil {
		return "<deleted>"
	}
	out, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(out))
}

func TestDurationsParseAndBadOnesNameTheLine(t *testing.T) {
	cfg, err := Parse([]byte(valid + "processing:\n  retry_backoff: 250ms\n  retention: 48h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Processing.RetryBackoff.D() != 250*time.Millisecond || cfg.Processing.Retention.D() != 48*time.Hour {
		t.Fatalf("durations %v %v", cfg.Processing.RetryBackoff.D(), cfg.Processing.Retention.D())
	}
	_, err = Parse([]byte(valid + "processing:\n  retry_backoff: soon\n"))
	if err == nil || !strings.Contains(err.Error(), `"soon" is not a duration`) {
		t.Fatalf("error %v, want one naming the bad duration", err)
	}
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, err := Parse([]byte(valid + "\nlogging:\n  levle: debug\n"))
	if err == nil || !strings.Contains(err.Error(), "levle") {
		t.Fatalf("error %v, want one naming the misspelt key", err)
	}
}

func TestExampleConfigIsCompleteAndRefused(t *testing.T) {
	data, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data)
	if err != nil {
		t.Fatalf("the example config does not parse: %v", err)
	}
	if err := cfg.Validate(); err == nil {
		t.Fatal("the example config with its placeholders was accepted")
	}
	// Every key of Config is documented in the example.
	var doc map[string]map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var full map[string]map[string]any
	out, _ := yaml.Marshal(cfg)
	if err := yaml.Unmarshal(out, &full); err != nil {
		t.Fatal(err)
	}
	for section, keys := range full {
		for key := range keys {
			if _, ok := doc[section][key]; !ok {
				t.Errorf("config.example.yaml does not document %s.%s", section, key)
			}
		}
	}
}

func TestEncryptionKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := os.WriteFile(path, []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(edit(t, "encryption.key", nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HasEncryptionKey() {
		t.Fatal("HasEncryptionKey without a key")
	}
	cfg.Encryption.KeyFile = path
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	fromFile, _, err := cfg.SealKeys()
	if err != nil {
		t.Fatal(err)
	}
	inline, _ := Parse([]byte(valid))
	want, _, _ := inline.SealKeys()
	if fromFile.ID() != want.ID() {
		t.Fatal("key_file and key give different keys")
	}
	cfg.Encryption.KeyFile = filepath.Join(dir, "missing")
	if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), "encryption.key_file: cannot read") {
		t.Fatalf("missing key file: %v", err)
	}
}

func TestSetEncryptionKey(t *testing.T) {
	data, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	const key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	if err := SetEncryptionKey(path, key); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(path)
	cfg, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Encryption.Key != key || !cfg.HasEncryptionKey() || !strings.Contains(string(out), "# Tokens shared with the homeserver") {
		t.Fatalf("key not written or comments lost: %q", cfg.Encryption.Key)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode())
	}
}

func TestSetTokensKeepsCommentsAndValidates(t *testing.T) {
	data, err := os.ReadFile("../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	as := strings.Repeat("a", 64)
	hs := strings.Repeat("b", 64)
	if err := SetTokens(path, as, hs); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "# Tokens shared with the homeserver") {
		t.Error("comments lost")
	}
	cfg, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AppService.ASToken != as || cfg.AppService.HSToken != hs {
		t.Errorf("tokens not written: %q %q", cfg.AppService.ASToken, cfg.AppService.HSToken)
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o600 {
		t.Errorf("mode changed to %v", info.Mode())
	}
}

func TestBotAPIHasItsOwnListener(t *testing.T) {
	cfg, err := Parse([]byte(valid + "botapi:\n  enabled: true\n  port: 29340\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ke *Error
	if err := cfg.Validate(); !errors.As(err, &ke) || ke.Key != "botapi.port" {
		t.Fatalf("bot API on the appservice's port: %v", err)
	}
	cfg.BotAPI.Port = 29341
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}
