package main

import (
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/mls-appservice/mls-appservice/internal/testenv"
)

// privateService is a service registered with a private homeserver of
// the test's own (testenv.StartSynapse), for tests that restart the
// homeserver or need registrations of their own.
type privateService struct {
	hs      *testenv.Homeserver
	cfgPath string
	regPath string
}

// startPrivateHomeserver writes a config for a service on a free port
// over dsn, generates its registration with -g as an operator would,
// starts a private homeserver that loads it, and points the config at
// that homeserver. extra sets further keys (section → key → value). The
// service itself is not started.
func startPrivateHomeserver(t *testing.T, dsn string, extra map[string]map[string]any) *privateService {
	t.Helper()
	syn := testenv.RequireSynapse(t)
	cfgPath := writeConfigWith(t, syn.ConfigPath, dsn, freePort(t), extra)
	regPath := filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
	if err := run([]string{"-g", "-c", cfgPath, "-r", regPath}, os.Stderr); err != nil {
		t.Fatalf("-g: %v", err)
	}
	hs := testenv.StartSynapse(t, testenv.SynapseOptions{Registrations: []string{regPath}})
	setConfigKey(t, cfgPath, "homeserver", "address", hs.URL())
	setConfigKey(t, cfgPath, "homeserver", "domain", hs.ServerName())
	return &privateService{hs: hs, cfgPath: cfgPath, regPath: regPath}
}

// setConfigKey rewrites one key of a config file.
func setConfigKey(t testing.TB, path, section, key string, value any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc[section] == nil {
		doc[section] = map[string]any{}
	}
	doc[section][key] = value
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}
