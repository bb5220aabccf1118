package config

import (
	"time"
)

// CSAPI configures the Matrix client-server façade (package csapi): its
// listener, how it creates rooms, and how long it holds a /sync whose
// encrypted events are not decrypted yet.
type CSAPI struct {
	Enabled  bool   `yaml:"enabled"`
	Hostname string `yaml:"hostname"`
	Port     int    `yaml:"port"`
	// PublicURL is the façade's URL as bots reach it, announced by
	// /.well-known/matrix/client (http://hostname:port if empty).
	PublicURL string `yaml:"public_url"`
	// CreateRooms is "all" (every room a bot creates is a DMLS room) or
	// "requested" (only rooms created with encryption asked for).
	CreateRooms string `yaml:"create_rooms"`
	// SyncHold bounds how long a response is held for events that are not
	// decrypted yet; after it they are marked undecryptable.
	SyncHold Duration `yaml:"sync_hold"`
	// SendWait bounds how long a send waits for the sender's device to
	// enter the room's MLS group (it just joined).
	SendWait Duration `yaml:"send_wait"`
	// MaxBodyBytes bounds the request bodies the façade reads itself;
	// MaxUploadBytes those it passes through (media uploads).
	MaxBodyBytes   int64 `yaml:"max_body_bytes"`
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// MaxResponseBytes bounds the homeserver responses the façade reads
	// to rewrite (/sync, /messages).
	MaxResponseBytes int64 `yaml:"max_response_bytes"`
}

func defaultCSAPI() CSAPI {
	return CSAPI{Hostname: "0.0.0.0", Port: 29342, CreateRooms: "all", SyncHold: Duration(10 * time.Second),
		SendWait: Duration(30 * time.Second), MaxBodyBytes: 1 << 20, MaxUploadBytes: 100 << 20, MaxResponseBytes: 64 << 20}
}

// validateCSAPI checks the csapi section (also when it is disabled).
func (c *Config) validateCSAPI() error {
	a := c.CSAPI
	if a.Hostname == "" {
		return keyErr("csapi.hostname", "missing (0.0.0.0 listens on every interface)")
	}
	if a.Port < 1 || a.Port > 65535 {
		return keyErr("csapi.port", "must be between 1 and 65535, got %d", a.Port)
	}
	if a.Enabled {
		for _, other := range []struct {
			key     string
			enabled bool
			host    string
			port    int
		}{
			{"appservice.port", true, c.AppService.Hostname, c.AppService.Port},
			{"botapi.port", c.BotAPI.Enabled, c.BotAPI.Hostname, c.BotAPI.Port},
		} {
			if other.enabled && a.Port == other.port && (a.Hostname == other.host || a.Hostname == "0.0.0.0" || other.host == "0.0.0.0") {
				return keyErr("csapi.port", "must differ from %s (%d): the façade has its own listener", other.key, a.Port)
			}
		}
	}
	if a.PublicURL != "" {
		if err := checkHTTPURL("csapi.public_url", a.PublicURL); err != nil {
			return err
		}
	}
	if err := oneOf("all", "requested")("csapi.create_rooms", a.CreateRooms); err != nil {
		return err
	}
	for _, v := range []struct {
		key           string
		value         int64
		lowest, limit int64
	}{
		{"csapi.max_body_bytes", a.MaxBodyBytes, 64 << 10, 64 << 20},
		{"csapi.max_upload_bytes", a.MaxUploadBytes, 1 << 20, 1 << 40},
		{"csapi.max_response_bytes", a.MaxResponseBytes, 1 << 20, 1 << 32},
	} {
		if v.value < v.lowest || v.value > v.limit {
			return keyErr(v.key, "must be between %d and %d, got %d", v.lowest, v.limit, v.value)
		}
	}
	if a.SyncHold.D() < 0 || a.SyncHold.D() > 5*time.Minute {
		return keyErr("csapi.sync_hold", "must be between 0s and 5m, got %s", a.SyncHold.D())
	}
	if a.SendWait.D() < time.Second {
		return keyErr("csapi.send_wait", "must be at least 1s, got %s", a.SendWait.D())
	}
	return nil
}
