package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/migrations"
)

// The end-to-end tests run the real binary: the test binary re-executes
// itself with runAsMain set and then behaves exactly like mls-appservice.
const runAsMain = "MLSAS_TEST_RUN_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serviceProcess is one running mls-appservice.
type serviceProcess struct {
	cmd    *exec.Cmd
	base   string
	logf   string
	exited chan struct{}
	// waitErr is how the process ended (cmd.Wait's error: an exit
	// status or a signal), set before exited closes.
	waitErr error
}

// writeConfig derives a config from the one ./scripts/test registered
// with Synapse, pointing at dsn. port 0 keeps the registered address, so
// Synapse delivers transactions to this service.
func writeConfig(t testing.TB, src, dsn string, port int) string {
	t.Helper()
	return writeConfigWith(t, src, dsn, port, nil)
}

// writeConfigWith is writeConfig with further keys set: extra maps a
// section to its keys and values.
func writeConfigWith(t testing.TB, src, dsn string, port int, extra map[string]map[string]any) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("read test config: %v", err)
	}
	var doc map[string]map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("parse test config: %v", err)
	}
	doc["database"]["uri"] = dsn
	for section, keys := range extra {
		if doc[section] == nil {
			doc[section] = map[string]any{}
		}
		for k, v := range keys {
			doc[section][k] = v
		}
	}
	if port != 0 {
		doc["appservice"]["port"] = port
		doc["appservice"]["address"] = fmt.Sprintf("http://127.0.0.1:%d", port)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func freePort(t testing.TB) int {
	t.Helper()
	return testenv.FreePort(t)
}

func startService(t testing.TB, cfgPath string) *serviceProcess {
	t.Helper()
	return startServiceFor(t, t, cfgPath)
}

// startServiceFor starts the service for owner: the process is stopped,
// and its log shown if owner failed, when owner ends; t is the test that
// starts it now and fails if it cannot (owner itself, or a subtest of it,
// whose goroutine must not call owner.Fatal).
//
// A process that exits before it is ready is started once more, its
// first log and how it ended logged: CI once saw a service end during
// start-up with an empty log and no way to tell why (a signal from
// outside, a clean exit), and one such exit must not fail a run whose
// subject is something else. A second early exit fails t.
func startServiceFor(t, owner testing.TB, cfgPath string) *serviceProcess {
	t.Helper()
	p, err := tryStartService(t, owner, cfgPath)
	if err != nil {
		t.Logf("%v; starting it once more", err)
		p, err = tryStartService(t, owner, cfgPath)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// tryStartService starts the service and waits until it is ready; an
// error says it exited first, with how it ended and its log.
func tryStartService(t, owner testing.TB, cfgPath string) (*serviceProcess, error) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logf := filepath.Join(owner.TempDir(), "service.log")
	out, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-c", cfgPath)
	cmd.Env = append(os.Environ(), runAsMain+"=1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start service: %v", err)
	}
	p := &serviceProcess{cmd: cmd, logf: logf, exited: make(chan struct{}),
		base: "http://127.0.0.1:" + strconv.Itoa(cfg.AppService.Port)}
	go func() { p.waitErr = cmd.Wait(); out.Close(); close(p.exited) }()
	owner.Cleanup(func() {
		p.stop()
		if owner.Failed() {
			log, _ := os.ReadFile(logf)
			t.Logf("service log:\n%s", log)
		}
		// MLSAS_SERVICE_LOGS=dir keeps every service's log, passed or
		// failed, as dir/<test>-<port>-<pid>.log (TempDir goes with the
		// test; a restarted service keeps its port, so the pid tells its
		// runs apart).
		if dir := os.Getenv("MLSAS_SERVICE_LOGS"); dir != "" {
			log, _ := os.ReadFile(logf)
			name := strings.NewReplacer("/", "_", " ", "_").Replace(owner.Name())
			keep := filepath.Join(dir, fmt.Sprintf("%s-%d-%d.log", name, cfg.AppService.Port, cmd.Process.Pid))
			err := os.MkdirAll(dir, 0o755)
			if err == nil {
				err = os.WriteFile(keep, log, 0o644)
			}
			if err != nil {
				t.Logf("keep service log: %v", err)
			}
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.base + "/_matrix/mau/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			log, _ := os.ReadFile(logf)
			return nil, fmt.Errorf("service exited during start-up (%s):\n%s", p.ended(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("service not ready after 60s (last error %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ended says how an exited process ended: "exit status 1", "signal:
// killed", or "exit status 0" for a clean exit (cmd.Wait's nil).
func (p *serviceProcess) ended() string {
	if p.waitErr != nil {
		return p.waitErr.Error()
	}
	return "exit status 0"
}

func (p *serviceProcess) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *serviceProcess) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL service: %v", err)
	}
	<-p.exited
}

func openDB(t testing.TB, dsn string) *database.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := database.Open(ctx, dsn, database.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}
	return db
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func putTransaction(t testing.TB, base, hsToken, txnID string, body any) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, base+"/_matrix/app/v1/transactions/"+txnID, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+hsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT transaction %s: %v", txnID, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT transaction %s: status %d", txnID, resp.StatusCode)
	}
}
