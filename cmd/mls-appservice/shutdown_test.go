package main

import (
	"context"
	"encoding/json"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
)

// TestReadinessAndShutdownWithFrozenDatabase runs the real binary over a
// PostgreSQL of the test's own: readiness must fail while the backlog is
// older than processing.ready_backlog and while the database does not
// answer, and SIGTERM must end the process within appservice.shutdown_grace
// even while PostgreSQL is frozen with SIGSTOP.
func TestReadinessAndShutdownWithFrozenDatabase(t *testing.T) {
	syn := testenv.RequireSynapse(t)
	pg := testenv.StartPostgres(t)
	dsn := pg.CreateDatabase(t, "mlsas")
	const grace = 2 * time.Second
	cfgPath := writeConfigWith(t, syn.ConfigPath, dsn, freePort(t), map[string]map[string]any{
		"appservice": {"shutdown_grace": grace.String()},
		"processing": {"ready_backlog": "2s", "poll": "100ms"},
		"database":   {"connect_timeout": "1s"},
	})
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	svc := startService(t, cfgPath)
	ctx := context.Background()

	// Hold splitting, as a busy other instance would, until the stored
	// transaction is older than ready_backlog.
	hold, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close(ctx)
	tx, err := hold.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, database.ProcessingLockKey); err != nil {
		t.Fatal(err)
	}
	putTransaction(t, svc.base, cfg.AppService.HSToken, "backlog-1", map[string]any{"events": []any{}})
	eventually(t, 30*time.Second, "not ready while the backlog is old", func() (bool, error) {
		code, status := readiness(svc.base)
		return code == http.StatusServiceUnavailable && status["backlog"] == false && status["database"] == true, nil
	})
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "ready again once the backlog is processed", func() (bool, error) {
		code, _ := readiness(svc.base)
		return code == http.StatusOK, nil
	})

	pg.Freeze(t)
	defer pg.Continue()
	eventually(t, 30*time.Second, "not ready while the database is frozen", func() (bool, error) {
		code, status := readiness(svc.base)
		return code == http.StatusServiceUnavailable && status["database"] == false, nil
	})
	start := time.Now()
	if err := svc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-svc.exited:
	case <-time.After(grace + 10*time.Second):
		t.Fatalf("still running %s after SIGTERM with the database frozen (grace %s)", time.Since(start), grace)
	}
	took := time.Since(start)
	t.Logf("exited %s after SIGTERM with the database frozen (grace %s)", took.Round(time.Millisecond), grace)
	if took > grace+time.Second {
		t.Errorf("exit took %s, more than the grace of %s", took, grace)
	}
}

// readiness asks /_matrix/mau/ready and returns its status and body.
func readiness(base string) (int, map[string]any) {
	cli := &http.Client{Timeout: 5 * time.Second}
	resp, err := cli.Get(base + "/_matrix/mau/ready")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var status map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&status)
	return resp.StatusCode, status
}
