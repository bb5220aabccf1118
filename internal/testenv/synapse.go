package testenv

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Bounds of the launcher. Synapse starts in 2–8 s here; the start bound
// is the one scripts/test uses for the shared homeserver, for a loaded
// CI machine.
const (
	startTimeout = 120 * time.Second
	stopTimeout  = 15 * time.Second // after SIGTERM, before SIGKILL
	logTailLines = 60
)

// SynapseOptions configures a private homeserver.
type SynapseOptions struct {
	// Registrations are the paths of appservice registration files
	// (registration.yaml) the homeserver loads; none, one or several.
	Registrations []string
}

// Homeserver is a private Synapse that one test owns: its own process,
// data directory (t.TempDir) and SQLite database. Its methods may be
// called from any goroutine.
type Homeserver struct {
	python     string
	dir        string
	configPath string
	logPath    string
	url        string
	serverName string
	secret     string // registration_shared_secret, for RegisterUser

	mu     sync.Mutex // serialises Start, Stop and Restart
	proc   *process   // nil while stopped
	starts int

	adminMu    sync.Mutex
	adminToken string // registered on first use
}

// process is one run of the homeserver.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done is closed
}

// StartSynapse starts a private Synapse for the calling test and waits
// until its client-server API answers. The test fails if it does not.
// The homeserver is stopped when the test ends; if the test failed, the
// tail of its log is attached to the test log.
func StartSynapse(t testing.TB, opts SynapseOptions) *Homeserver {
	t.Helper()
	h := newHomeserver(t, opts, nil)
	h.Start(t)
	return h
}

// newHomeserver writes the configuration of a homeserver into a new
// temporary directory and registers its cleanup; it does not start it.
// fed is nil for a homeserver that does not federate.
func newHomeserver(t testing.TB, opts SynapseOptions, fed *federationListener) *Homeserver {
	t.Helper()
	python := require(t, SynapsePythonVar)
	tmplPath := require(t, SynapseTemplateVar)
	tmpl, err := os.ReadFile(tmplPath)
	if err != nil {
		t.Fatalf("read the Synapse template (%s): %v", SynapseTemplateVar, err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)

	// Synapse runs in its data directory; relative paths are the test's.
	registrations := make([]string, len(opts.Registrations))
	for i, r := range opts.Registrations {
		if registrations[i], err = filepath.Abs(r); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	s := synapseSettings{
		dir:           dir,
		clientPort:    port,
		registrations: registrations,
		sharedSecret:  hex.EncodeToString(secret),
		federation:    fed,
	}
	if fed != nil {
		if err := fed.writeCertificate(dir); err != nil {
			t.Fatal(err)
		}
	}
	cfg, serverName, err := renderSynapseConfig(tmpl, s)
	if err != nil {
		t.Fatalf("derive homeserver.yaml from %s: %v", tmplPath, err)
	}
	h := &Homeserver{
		python:     python,
		dir:        dir,
		configPath: filepath.Join(dir, "homeserver.yaml"),
		logPath:    filepath.Join(dir, "homeserver.log"),
		url:        "http://127.0.0.1:" + strconv.Itoa(port),
		serverName: serverName,
		secret:     s.sharedSecret,
	}
	if err := os.WriteFile(h.configPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("%s: last lines of its log:\n%s", h, h.logTail(logTailLines))
		}
		h.keepLog(t)
	})
	return h
}

// keepLog copies the homeserver's whole log into the directory
// MLSAS_SYNAPSE_LOGS names, if set, before its data directory goes: a
// failure found by a long run (a soak) can then be read afterwards.
func (h *Homeserver) keepLog(t testing.TB) {
	dir := os.Getenv("MLSAS_SYNAPSE_LOGS")
	if dir == "" {
		return
	}
	data, err := os.ReadFile(h.logPath)
	if err == nil {
		err = os.MkdirAll(dir, 0o700)
	}
	if err == nil {
		name := strings.NewReplacer(":", "_", "/", "_").Replace(h.serverName) + ".log"
		err = os.WriteFile(filepath.Join(dir, name), data, 0o600)
	}
	if err != nil {
		t.Logf("%s: keeping its log in %s: %v", h, dir, err)
	}
}

// URL is the base URL of the client-server API, http://127.0.0.1:<port>.
// It stays the same across restarts.
func (h *Homeserver) URL() string { return h.url }

// ServerName is the homeserver's server_name: the template's
// ("localhost") for a lone homeserver, "localhost:<port>" in a federation.
func (h *Homeserver) ServerName() string { return h.serverName }

// Dir is the data directory: homeserver.yaml, homeserver.log, the SQLite
// database and the signing key.
func (h *Homeserver) Dir() string { return h.dir }

// String is for failure messages.
func (h *Homeserver) String() string {
	return fmt.Sprintf("private Synapse %s at %s", h.serverName, h.url)
}

// Start starts the homeserver again after Stop, on the same data
// directory, ports and configuration, and waits until it answers.
func (h *Homeserver) Start(t testing.TB) {
	t.Helper()
	took, err := h.start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s answered after %v", h, took.Round(time.Millisecond))
}

// Stop stops the homeserver: SIGTERM, then SIGKILL if it has not exited
// within 15 s. Stopping a stopped homeserver does nothing.
func (h *Homeserver) Stop(t testing.TB) {
	t.Helper()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}

// Restart is Stop then Start. The SQLite database survives, so the
// restarted homeserver behaves as a restarted production one on SQLite
// would (it reuses appservice transaction ids, DESIGN §7).
func (h *Homeserver) Restart(t testing.TB) {
	t.Helper()
	began := time.Now()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(began)
	took, err := h.start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s restarted: stopped in %v, answered %v later", h, stopped.Round(time.Millisecond), took.Round(time.Millisecond))
}

// start starts the process and reports how long it took to answer.
func (h *Homeserver) start(ctx context.Context) (time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc != nil {
		if err := h.proc.exited(); err != nil {
			h.proc = nil
			return 0, fmt.Errorf("%s: Start: %w", h, err)
		}
		return 0, fmt.Errorf("%s: Start: already running", h)
	}
	h.starts++
	logFile, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("%s: open log: %w", h, err)
	}
	defer logFile.Close() // the child has its own descriptor
	// The marker separates runs in the log tail of a failed restart test.
	fmt.Fprintf(logFile, "=== testenv: start #%d of %s\n", h.starts, h)

	began := time.Now()
	cmd := exec.Command(h.python, "-m", "synapse.app.homeserver", "-c", h.configPath)
	cmd.Dir = h.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%s: start %s (%s): %w", h, h.python, SynapsePythonVar, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := h.waitReady(ctx, p); err != nil {
		_ = terminate(p)
		return 0, fmt.Errorf("%s: %w; last lines of its log:\n%s", h, err, h.logTail(logTailLines))
	}
	h.proc = p
	return time.Since(began), nil
}

// waitReady polls /_matrix/client/versions until it answers 200, the
// process exits, or startTimeout passes.
func (h *Homeserver) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if h.answers(ctx) {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited during start-up (%v)", p.err)
		case <-ctx.Done():
			return fmt.Errorf("did not answer /_matrix/client/versions within %v: %w", startTimeout, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

func (h *Homeserver) answers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url+"/_matrix/client/versions", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

func (h *Homeserver) stop() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc == nil {
		return nil
	}
	p := h.proc
	h.proc = nil
	if err := p.exited(); err != nil {
		return fmt.Errorf("%s: %w", h, err)
	}
	if err := terminate(p); err != nil {
		return fmt.Errorf("%s: %w", h, err)
	}
	return nil
}

// exited reports a process that exited without being asked to, which
// fails the test: a test never expects Synapse to die by itself.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("exited unexpectedly (%v); see its log", p.err)
	default:
		return nil
	}
}

// terminate sends SIGTERM, waits stopTimeout, then kills. A Synapse that
// needs SIGKILL is reported, because a test that restarts it expects a
// clean shutdown.
func terminate(p *process) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("did not exit within %v of SIGTERM; killed", stopTimeout)
}

// logTail returns the last n lines of the homeserver's log.
func (h *Homeserver) logTail(n int) string {
	f, err := os.Open(h.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const window = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		if _, err := f.Seek(-window, io.SeekEnd); err != nil {
			return fmt.Sprintf("(read log: %v)", err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	data = bytes.TrimRight(data, "\n")
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == '\n' {
			if n--; n == 0 {
				return string(data[i+1:])
			}
		}
	}
	return string(data)
}

// User is a plain Matrix user (not an appservice user) with a password.
type User struct {
	UserID      string
	AccessToken string
	DeviceID    string
}

// RegisterUser registers a plain user with a password through Synapse's
// shared-secret admin registration API (/_synapse/admin/v1/register) and
// returns its access token. Registration is closed to anonymous clients,
// as in the compose stack; this is how an operator creates a human user.
func (h *Homeserver) RegisterUser(t testing.TB, localpart, password string) User {
	t.Helper()
	u, err := h.registerUser(t.Context(), localpart, password, false)
	if err != nil {
		t.Fatalf("%s: register %s: %v", h, localpart, err)
	}
	return u
}

func (h *Homeserver) registerUser(ctx context.Context, localpart, password string, admin bool) (User, error) {
	const path = "/_synapse/admin/v1/register"
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := h.call(ctx, http.MethodGet, path, "", nil, &nonce); err != nil {
		return User{}, fmt.Errorf("get nonce: %w", err)
	}
	role := "notadmin"
	if admin {
		role = "admin"
	}
	// The MAC Synapse expects: HMAC-SHA1 over NUL-separated fields.
	mac := hmac.New(sha1.New, []byte(h.secret))
	for i, f := range []string{nonce.Nonce, localpart, password, role} {
		if i > 0 {
			mac.Write([]byte{0})
		}
		mac.Write([]byte(f))
	}
	req := map[string]any{
		"nonce":    nonce.Nonce,
		"username": localpart,
		"password": password,
		"admin":    admin,
		"mac":      hex.EncodeToString(mac.Sum(nil)),
	}
	var resp struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	if err := h.call(ctx, http.MethodPost, path, "", req, &resp); err != nil {
		return User{}, err
	}
	return User{UserID: resp.UserID, AccessToken: resp.AccessToken, DeviceID: resp.DeviceID}, nil
}

// AdminToken returns the access token of the homeserver's admin user
// (for its admin API: what the homeserver itself holds).
func (h *Homeserver) AdminToken(t testing.TB) string {
	t.Helper()
	token, err := h.admin(t.Context())
	if err != nil {
		t.Fatalf("%s: %v", h, err)
	}
	return token
}

// admin returns the access token of the homeserver's admin user,
// registering it on first use, so that only homeservers that need the
// admin API pay for the registration (a bcrypt hash, ~0.3 s).
func (h *Homeserver) admin(ctx context.Context) (string, error) {
	h.adminMu.Lock()
	defer h.adminMu.Unlock()
	if h.adminToken != "" {
		return h.adminToken, nil
	}
	password := make([]byte, 16)
	_, _ = rand.Read(password)
	u, err := h.registerUser(ctx, "testenv_admin", hex.EncodeToString(password), true)
	if err != nil {
		return "", fmt.Errorf("register the admin user: %w", err)
	}
	h.adminToken = u.AccessToken
	return h.adminToken, nil
}

// statusError is an answer other than 200 OK.
type statusError struct {
	method, path string
	status       int
	body         []byte
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.method, e.path, e.status, http.StatusText(e.status), e.body)
}

// call sends a JSON request to the homeserver, with the access token if
// one is given, and decodes a 200 answer into out; other answers are a
// *statusError.
func (h *Homeserver) call(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.url+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{method: method, path: path, status: resp.StatusCode, body: bytes.TrimSpace(data)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// synapseSettings is what a private homeserver changes in the template.
type synapseSettings struct {
	dir           string
	clientPort    int
	registrations []string
	sharedSecret  string
	federation    *federationListener // nil: no federation listener
}

// renderSynapseConfig derives a private homeserver's configuration from
// the compose stack's (deploy/synapse/homeserver.yaml) and returns it
// with the resulting server name. It changes only what differs outside
// the container: paths, listeners, the database (always SQLite in the
// data directory, whatever the template uses, so that restarts behave as
// on SQLite), the registration files and the shared registration secret;
// and, for a federation, what DESIGN §7 lists.
func renderSynapseConfig(tmpl []byte, s synapseSettings) ([]byte, string, error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(tmpl, &cfg); err != nil {
		return nil, "", fmt.Errorf("parse: %w", err)
	}
	listeners, _ := cfg["listeners"].([]any)
	if len(listeners) == 0 {
		return nil, "", errors.New("no listeners")
	}
	first, ok := listeners[0].(map[string]any)
	if !ok {
		return nil, "", errors.New("listeners[0] is not a mapping")
	}
	// The first listener is the client API, as in render-config.py;
	// others would need ports of their own and are not used by tests.
	client := maps.Clone(first)
	client["port"] = s.clientPort
	client["bind_addresses"] = []string{"127.0.0.1"}
	listeners = []any{client}

	cfg["pid_file"] = filepath.Join(s.dir, "homeserver.pid")
	cfg["signing_key_path"] = filepath.Join(s.dir, "signing.key")
	cfg["media_store_path"] = filepath.Join(s.dir, "media_store")
	cfg["database"] = map[string]any{
		"name": "sqlite3",
		"args": map[string]any{"database": filepath.Join(s.dir, "homeserver.db")},
	}
	// Logging goes to stderr, which the launcher writes to homeserver.log.
	delete(cfg, "log_config")
	cfg["app_service_config_files"] = append([]string{}, s.registrations...) // [] rather than null
	cfg["registration_shared_secret"] = s.sharedSecret

	if f := s.federation; f != nil {
		cfg["server_name"] = f.serverName()
		listeners = append(listeners, map[string]any{
			"port":           f.port,
			"bind_addresses": []string{"127.0.0.1"},
			"type":           "http",
			"tls":            true,
			"resources":      []any{map[string]any{"names": []string{"federation"}}},
		})
		cfg["tls_certificate_path"] = filepath.Join(s.dir, certFile)
		cfg["tls_private_key_path"] = filepath.Join(s.dir, keyFile)
		cfg["federation_verify_certificates"] = false
		cfg["trusted_key_servers"] = []any{}
		// Synapse 1.163.2 still calls these ip_range_blacklist and
		// ip_range_whitelist (only its code says blocklist). Allowing
		// loopback is narrower than emptying the blocklist.
		cfg["ip_range_whitelist"] = []string{"127.0.0.0/8"}
		fedCfg, _ := cfg["federation"].(map[string]any)
		if fedCfg == nil {
			fedCfg = map[string]any{}
		}
		// Durations are milliseconds: Synapse's duration parser knows
		// s, m, h, d, w, y but not "ms". A transaction is retried about
		// every second for ~10 minutes instead of backing off to 60 s
		// (max_long_retry_delay), so a healed link carries it within
		// seconds; a destination marked down is retried after at most
		// 2 s instead of 10 minutes.
		fedCfg["max_long_retry_delay"] = 1000
		fedCfg["max_long_retries"] = 600
		fedCfg["destination_min_retry_interval"] = 500
		fedCfg["destination_retry_multiplier"] = 2
		fedCfg["destination_max_retry_interval"] = 2000
		cfg["federation"] = fedCfg
	}
	cfg["listeners"] = listeners

	serverName, _ := cfg["server_name"].(string)
	if serverName == "" {
		return nil, "", errors.New("no server_name")
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, "", err
	}
	return out, serverName, nil
}
