package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/botapi/client"
	"github.com/mls-appservice/mls-appservice/config"
)

// botAPIOptions turn the bot API on, on a free port, tuned for tests.
func botAPIOptions(t testing.TB, name string) serviceOptions {
	return serviceOptions{name: name, extra: map[string]map[string]any{"botapi": {
		"enabled": true, "hostname": "127.0.0.1", "port": freePort(t), "poll": "200ms", "keepalive": "2s",
		"rate_limit": 1000, "rate_burst": 1000, "webhook_attempts": 4, "webhook_backoff": "100ms",
		"webhook_max_backoff": "400ms", "webhook_timeout": "2s"}}}
}

// botAPIBase is the bot API's URL of the service configured at cfgPath.
func botAPIBase(t testing.TB, cfgPath string) string {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", cfg.BotAPI.Port)
}

// addBot registers a bot with the operator command and returns its token.
func addBot(t testing.TB, cfgPath, name string) string {
	t.Helper()
	out := strings.TrimSpace(runCommand(t, cfgPath, "bots", "add", name))
	lines := strings.Split(out, "\n")
	token := lines[len(lines)-1]
	if !strings.HasPrefix(token, "mlsbot_") {
		t.Fatalf("bots add printed %q", out)
	}
	return token
}

// secondInstance starts another mls-appservice over the same database
// (its own appservice and bot API ports; the homeserver does not know it,
// but it takes its share of the work queues).
func secondInstance(t *testing.T, cfgPath string) (*serviceProcess, string) {
	t.Helper()
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	setConfigKey(t, path, "appservice", "port", freePort(t))
	setConfigKey(t, path, "botapi", "port", freePort(t))
	return startService(t, path), botAPIBase(t, path)
}

// sendRetry sends, retrying while the puppet's device is not in the
// room's group yet.
func sendRetry(t testing.TB, c *client.Client, puppet, room, body, key string) client.SendResult {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := c.Send(context.Background(), puppet, room, "m.room.message",
			map[string]string{"msgtype": "m.text", "body": body}, key)
		var apiErr *client.Error
		if err == nil {
			return res
		}
		// Not yet: the puppet's Welcome (not_in_group) or its autojoin
		// of the invitation (not_in_room) is still on its way.
		if !errors.As(err, &apiErr) || (apiErr.Code != "not_in_group" && apiErr.Code != "not_in_room") || time.Now().After(deadline) {
			t.Fatalf("send %q as %s: %v", body, puppet, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitConverged waits until the room's group holds devices devices and
// one head, as puppet sees it.
func waitConverged(t testing.TB, c *client.Client, puppet, room string, devices int) {
	t.Helper()
	var last client.RoomState
	var lastErr error
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		last, lastErr = c.Room(context.Background(), puppet, room)
		if lastErr == nil && last.Converged && len(last.Devices) == devices {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("room %s not converged on %d devices: %+v %v", room, devices, last, lastErr)
}
