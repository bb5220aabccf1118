package main

import (
	"bytes"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	mauappservice "maunium.net/go/mautrix/appservice"

	mlsappservice "github.com/mls-appservice/mls-appservice"
	"github.com/mls-appservice/mls-appservice/config"
)

func TestExampleFlagWritesExampleOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := run([]string{"-e", "-c", path}, os.Stderr); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, mlsappservice.ExampleConfig()) {
		t.Fatalf("-e wrote something else (%v)", err)
	}
	if err := run([]string{"-e", "-c", path}, os.Stderr); err == nil {
		t.Fatal("-e overwrote an existing config")
	}
}

// exampleWith writes the example config with its placeholders replaced.
func exampleWith(t *testing.T, replace ...string) string {
	t.Helper()
	text := strings.NewReplacer(
		"https://matrix.example.com", "http://127.0.0.1:8008",
		"domain: example.com", "domain: localhost",
		"mls_appservice:CHANGE_ME@localhost", "mls:pw@127.0.0.1",
	).Replace(string(mlsappservice.ExampleConfig()))
	for i := 0; i+1 < len(replace); i += 2 {
		text = strings.ReplaceAll(text, replace[i], replace[i+1])
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGenerateFlagWritesRegistrationAndTokens(t *testing.T) {
	cfgPath := exampleWith(t)
	regPath := filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
	if err := run([]string{"-g", "-c", cfgPath, "-r", regPath}, os.Stderr); err != nil {
		t.Fatal(err)
	}
	reg, err := mauappservice.LoadRegistration(regPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config after -g does not validate: %v", err)
	}
	if cfg.AppService.ASToken != reg.AppToken || cfg.AppService.HSToken != reg.ServerToken || len(reg.AppToken) != 64 {
		t.Fatalf("tokens in config and registration differ")
	}
	if !reg.EphemeralEvents || !reg.SoruEphemeralEvents || !reg.MSC3202 || !reg.MSC4190 ||
		len(reg.Namespaces.UserIDs) == 0 || !reg.Namespaces.UserIDs[0].Exclusive || reg.URL != cfg.AppService.Address {
		t.Fatalf("registration %+v", reg)
	}
	if info, err := os.Stat(regPath); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("registration file mode %v (%v), want 0600: it holds secrets", info.Mode(), err)
	}
}

// TestGenerateNeedsOnlyTheRegistrationKeys runs -g on the example config
// with only the registration's keys filled in (the database password is
// still the placeholder, as on an operator's first run), from a world-
// readable file: it must succeed and leave the file readable by its owner
// only, since it now holds the tokens.
func TestGenerateNeedsOnlyTheRegistrationKeys(t *testing.T) {
	cfgPath := exampleWith(t, "mls:pw@127.0.0.1", "mls_appservice:CHANGE_ME@localhost")
	if err := os.Chmod(cfgPath, 0o644); err != nil {
		t.Fatal(err)
	}
	regPath := filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
	if err := run([]string{"-g", "-c", cfgPath, "-r", regPath}, os.Stderr); err != nil {
		t.Fatalf("-g with a placeholder database password: %v", err)
	}
	info, err := os.Stat(cfgPath)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("config mode after -g %v (%v), want 0600: it holds the tokens", info.Mode(), err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "database.uri") {
		t.Fatalf("start-up validation %v, want the database placeholder refused", err)
	}
}

func TestGenerateRefusesPlaceholders(t *testing.T) {
	cfgPath := exampleWith(t, "http://127.0.0.1:8008", "https://matrix.example.com")
	err := run([]string{"-g", "-c", cfgPath, "-r", filepath.Join(t.TempDir(), "r.yaml")}, os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "homeserver.address") {
		t.Fatalf("error %v, want one naming homeserver.address", err)
	}
}

// startupError runs the real binary with cfgPath and returns what it
// printed; it must exit non-zero.
func startupError(t *testing.T, cfgPath string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-c", cfgPath)
	cmd.Env = append(os.Environ(), runAsMain+"=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("service started with a bad config; output:\n%s", out)
	}
	return string(out)
}

func TestStartupConfigErrorsAreOneLineNamingTheKey(t *testing.T) {
	tests := []struct {
		name    string
		replace []string
		want    string
	}{
		{"placeholder token", nil, "appservice.as_token: still the placeholder; run mls-appservice -g"},
		{"malformed URL", []string{"http://127.0.0.1:8008", "127.0.0.1:8008"}, "homeserver.address: must be an http:// or https:// URL"},
		{"missing database", []string{"  uri: postgres://mls:pw@127.0.0.1:5432/mls_appservice?sslmode=disable\n", ""}, "database.uri: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := startupError(t, exampleWith(t, tt.replace...))
			if strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, tt.want) {
				t.Fatalf("output %q, want one line containing %q", out, tt.want)
			}
		})
	}
}

func TestStartupWithUnreachableDatabase(t *testing.T) {
	cfgPath := exampleWith(t,
		"mls:pw@127.0.0.1:5432", "mls:topsecretpw@127.0.0.1:1",
		"as_token: CHANGE_ME (run mls-appservice -g)", "as_token: "+strings.Repeat("A", 64),
		"hs_token: CHANGE_ME (run mls-appservice -g)", "hs_token: "+strings.Repeat("B", 64),
		"key: CHANGE_ME (run mls-appservice -g)", "key: "+base64.StdEncoding.EncodeToString(make([]byte, 32)))
	out := startupError(t, cfgPath)
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("output is not one line: %q", out)
	}
	if !strings.Contains(out, "database.uri") || !strings.Contains(out, "127.0.0.1:1") {
		t.Errorf("output %q does not name the key and address", out)
	}
	if strings.Contains(out, "topsecretpw") {
		t.Errorf("output %q reveals the password", out)
	}
}
