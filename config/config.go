package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config is the whole service configuration. Field comments live in
// config.example.yaml, which documents every key.
type Config struct {
	Homeserver Homeserver `yaml:"homeserver"`
	AppService AppService `yaml:"appservice"`
	Database   Database   `yaml:"database"`
	Logging    Logging    `yaml:"logging"`
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
}

type Database struct {
	URI      string `yaml:"uri"`
	MaxConns int32  `yaml:"max_conns"`
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
			UserPrefix: "mls_", MaxBodyBytes: 16 << 20},
		Database: Database{MaxConns: 10},
		Logging:  Logging{Level: "info", Format: "auto"},
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

// ValidateForRegistration checks every key that -g needs: all of them
// except the tokens that -g is about to generate.
func (c *Config) ValidateForRegistration() error {
	checks := []struct {
		key, value string
		check      func(key, value string) error
	}{
		{"homeserver.address", c.Homeserver.Address, checkHTTPURL},
		{"homeserver.domain", c.Homeserver.Domain, checkDomain},
		{"appservice.address", c.AppService.Address, checkHTTPURL},
		{"appservice.id", c.AppService.ID, checkLocalpart},
		{"appservice.bot_username", c.AppService.BotUsername, checkLocalpart},
		{"appservice.user_prefix", c.AppService.UserPrefix, checkLocalpart},
		{"database.uri", c.Database.URI, checkDatabaseURI},
		{"logging.level", c.Logging.Level, oneOf("trace", "debug", "info", "warn", "error")},
		{"logging.format", c.Logging.Format, oneOf("auto", "pretty", "json")},
	}
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
	if c.AppService.Port < 1 || c.AppService.Port > 65535 {
		return keyErr("appservice.port", "must be between 1 and 65535, got %d", c.AppService.Port)
	}
	if c.AppService.MaxBodyBytes < 1<<10 {
		return keyErr("appservice.max_body_bytes", "must be at least 1024, got %d", c.AppService.MaxBodyBytes)
	}
	if c.Database.MaxConns < 2 {
		return keyErr("database.max_conns", "must be at least 2 (intake and processing each need one), got %d", c.Database.MaxConns)
	}
	if strings.HasPrefix(c.AppService.BotUsername, c.AppService.UserPrefix) {
		return keyErr("appservice.bot_username", "must not start with appservice.user_prefix %q", c.AppService.UserPrefix)
	}
	return nil
}

// Validate checks everything needed to run the service.
func (c *Config) Validate() error {
	if err := c.ValidateForRegistration(); err != nil {
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
	return nil
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
