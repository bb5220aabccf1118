package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
)

// testService is one mls-appservice of a multi-service test: the real
// binary, and the same components assembled in the test process over the
// service's database (one more instance of it), through which the test
// drives the service's Go API.
type testService struct {
	name    string
	cfgPath string
	cfg     *config.Config
	db      *database.DB
	proc    *serviceProcess
	c       *components
	// link is the delay line in front of the service, if any.
	link *delayLine
	// owner is the test the service was launched for: its processes,
	// restarts included, live until that test ends, not until the end of
	// the subtest that restarted it.
	owner testing.TB
}

// serviceOptions name a service's registration and tune it for tests.
type serviceOptions struct {
	name   string // registration id and namespace: @<name>_...
	extra  map[string]map[string]any
	groups map[string]any
	// linkDelay or linkDrop, if set, put a delay line (delayline_test.go)
	// between the homeserver and the service: every transaction reaches
	// it linkDelay late, without the events linkDrop picks.
	linkDelay time.Duration
	linkDrop  func(event json.RawMessage) bool
}

// startServices starts a private Synapse with one registration per
// service, each service on its own database, as separate appservices
// whose puppets meet only through the homeserver.
func startServices(t testing.TB, opts ...serviceOptions) (*testenv.Homeserver, []*testService) {
	t.Helper()
	var regs []string
	var out []*testService
	for _, o := range opts {
		s, reg := prepareService(t, o)
		regs = append(regs, reg)
		out = append(out, s)
	}
	hs := testenv.StartSynapse(t, testenv.SynapseOptions{Registrations: regs})
	for _, s := range out {
		s.launch(t, hs)
	}
	return hs, out
}

// prepareService writes a service's configuration (its own database, its
// own port) and its registration, whose path it returns for the
// homeserver that will load it; launch starts the service once that
// homeserver runs.
func prepareService(t testing.TB, o serviceOptions) (*testService, string) {
	t.Helper()
	syn := testenv.RequireSynapse(t)
	extra := map[string]map[string]any{
		"appservice": {"id": o.name, "user_prefix": o.name + "_", "bot_username": o.name + "bot"},
		"processing": {"poll": "100ms", "retry_backoff": "200ms", "max_retry_backoff": "2s"},
		"groups":     {"commit_grace": "3s", "commit_jitter": "1s", "wait": "30s", "send_timeout": "20s"},
		"logging":    {"level": "debug"},
	}
	for k, v := range o.groups {
		extra["groups"][k] = v
	}
	for sec, kv := range o.extra {
		if extra[sec] == nil {
			extra[sec] = map[string]any{}
		}
		for k, v := range kv {
			extra[sec][k] = v
		}
	}
	port := freePort(t)
	cfgPath := writeConfigWith(t, syn.ConfigPath, testenv.Database(t), port, extra)
	regPath := filepath.Join(filepath.Dir(cfgPath), "registration.yaml")
	if err := run([]string{"-g", "-c", cfgPath, "-r", regPath}, os.Stderr); err != nil {
		t.Fatalf("-g for %s: %v", o.name, err)
	}
	s := &testService{name: o.name, cfgPath: cfgPath}
	if o.linkDelay > 0 || o.linkDrop != nil {
		s.link = startDelayLine(t, o.linkDelay, o.linkDrop, fmt.Sprintf("http://127.0.0.1:%d", port))
		pointRegistration(t, regPath, s.link.addr)
	}
	return s, regPath
}

// launch points the service at its homeserver, starts its process and
// assembles its components in the test process.
func (s *testService) launch(t testing.TB, hs *testenv.Homeserver) {
	t.Helper()
	setConfigKey(t, s.cfgPath, "homeserver", "address", hs.URL())
	setConfigKey(t, s.cfgPath, "homeserver", "domain", hs.ServerName())
	cfg, err := config.Load(s.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cfg = cfg
	s.owner = t
	s.proc = startService(t, s.cfgPath)
	s.db = openDB(t, cfg.Database.URI)
	s.c, err = assemble(cfg, s.db, prometheus.NewRegistry(), zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).
		With().Str("instance", "test-"+s.name).Logger())
	if err != nil {
		t.Fatal(err)
	}
}

// restart kills the service with SIGKILL and starts it again. t may be
// a subtest of the test that launched the service: the new process
// belongs to that test all the same (startServiceFor), so that it keeps
// running after the subtest ends.
func (s *testService) restart(t *testing.T) {
	t.Helper()
	s.proc.kill(t)
	s.proc = startServiceFor(t, s.owner, s.cfgPath)
}

// running reports an error if the service's process has exited.
func (s *testService) running() error {
	select {
	case <-s.proc.exited:
		return fmt.Errorf("service %s is not running (exit: %v)", s.name, s.proc.cmd.ProcessState)
	default:
		return nil
	}
}

// until polls cond until it holds, failing the test with what after the
// timeout.
func until(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx := context.Background()
	eventually(t, timeout, what, func() (bool, error) { return cond(ctx) })
}
