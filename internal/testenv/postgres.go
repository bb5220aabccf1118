package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresBinVar names the directory of the PostgreSQL 15 server binaries
// (default /usr/lib/postgresql/15/bin, as ./scripts/test uses).
const PostgresBinVar = "PG_BIN"

// PrivatePostgres is a PostgreSQL cluster of one test's own, for tests
// that must disturb the server itself (freeze it, stop it) without
// touching the one every other test package uses.
type PrivatePostgres struct {
	// DSN connects to its postgres database.
	DSN  string
	dir  string
	bin  string
	pid  int
	asPG func(name string, args ...string) *exec.Cmd
}

// StartPostgres initialises and starts a private cluster in a temporary
// directory and stops it when the test ends.
func StartPostgres(t testing.TB) *PrivatePostgres {
	t.Helper()
	bin := os.Getenv(PostgresBinVar)
	if bin == "" {
		bin = "/usr/lib/postgresql/15/bin"
	}
	if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
		t.Fatalf("PostgreSQL 15 binaries not found in %s (%s): %v", bin, PostgresBinVar, err)
	}
	dir, err := os.MkdirTemp("", "mlsas-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	asPG := func(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
	// initdb refuses to run as root: run the cluster as the postgres user.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres user for initdb: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		asPG = func(name string, args ...string) *exec.Cmd {
			return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asPG(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := FreePort(t)
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -k %s -c fsync=off", port, dir)
	if out, err := asPG(filepath.Join(bin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60",
		"-o", opts, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	p := &PrivatePostgres{DSN: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port),
		dir: dir, bin: bin, asPG: asPG}
	pidFile, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	p.pid, _ = strconv.Atoi(strings.TrimSpace(strings.SplitN(string(pidFile), "\n", 2)[0]))
	t.Cleanup(func() {
		p.Continue()
		_ = p.asPG(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop").Run()
	})
	return p
}

// CreateDatabase creates an empty database on the private cluster and
// returns its DSN.
func (p *PrivatePostgres) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(p.DSN, "/postgres?", "/"+name+"?", 1)
}

// Freeze stops the server and all its backends with SIGSTOP: connections
// stay open but nothing answers, as with a hung host.
func (p *PrivatePostgres) Freeze(t testing.TB) {
	t.Helper()
	for _, pid := range p.pids() {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %d: %v", pid, err)
		}
	}
}

// Continue resumes a frozen server.
func (p *PrivatePostgres) Continue() {
	for _, pid := range p.pids() {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
}

// pids lists the postmaster and its children.
func (p *PrivatePostgres) pids() []int {
	pids := []int{p.pid}
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(p.pid)).Output()
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}
