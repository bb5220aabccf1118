package keys

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/matrix"
	"github.com/mls-appservice/mls-appservice/migrations"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// The service-level test runs the real binary against a private Synapse
// and the test PostgreSQL. It lives here rather than in
// cmd/mls-appservice so that it can build forgeries with this package's
// helpers, as a misbehaving device would.

const (
	testStock    = 5
	testLowWater = 3
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// serviceBinary builds mls-appservice once per test binary.
func serviceBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mlsas-keys-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "mls-appservice")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/mls-appservice/mls-appservice/cmd/mls-appservice").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

type service struct {
	cmd    *exec.Cmd
	logf   string
	exited chan struct{}
}

func startBinary(t *testing.T, bin, cfgPath string) *service {
	t.Helper()
	logf := filepath.Join(t.TempDir(), "service.log")
	out, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &service{cmd: cmd, logf: logf, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); out.Close(); close(s.exited) }()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			data, _ := os.ReadFile(logf)
			if len(data) > 20000 {
				data = data[len(data)-20000:]
			}
			t.Logf("service log (tail):\n%s", data)
		}
	})
	return s
}

func (s *service) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *service) kill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.exited
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
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
		time.Sleep(250 * time.Millisecond)
	}
}

// writeYAML writes doc to path with mode 0600.
func writeYAML(t *testing.T, path string, doc map[string]map[string]any) {
	t.Helper()
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func readYAML(t *testing.T, path string) map[string]map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// env is one service deployment: database, homeserver, configuration,
// and the test's own view of both.
type env struct {
	bin     string
	cfgPath string
	cfg     *config.Config
	dsn     string
	hs      *testenv.Homeserver
	db      *database.DB
	puppets *matrix.Puppets
	m       *Manager // the test's Manager: same database and key, to claim and to open
	sealer  *seal.Sealer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{bin: serviceBinary(t), dsn: testenv.Database(t)}
	dir := t.TempDir()
	e.cfgPath = filepath.Join(dir, "config.yaml")
	regPath := filepath.Join(dir, "registration.yaml")
	port := freePort(t)
	doc := map[string]map[string]any{
		"homeserver": {"address": "http://127.0.0.1:9", "domain": "localhost"},
		"appservice": {"address": fmt.Sprintf("http://127.0.0.1:%d", port), "hostname": "127.0.0.1", "port": port,
			"as_token": "CHANGE_ME", "hs_token": "CHANGE_ME"},
		"database":   {"uri": e.dsn},
		"processing": {"poll": "200ms"},
		"keys":       {"stock": testStock, "low_water": testLowWater, "check_interval": "1h"},
		"logging":    {"level": "debug", "format": "json"},
	}
	writeYAML(t, e.cfgPath, doc)
	if out, err := exec.Command(e.bin, "-g", "-c", e.cfgPath, "-r", regPath).CombinedOutput(); err != nil {
		t.Fatalf("-g: %v\n%s", err, out)
	}
	e.hs = testenv.StartSynapse(t, testenv.SynapseOptions{Registrations: []string{regPath}})
	doc = readYAML(t, e.cfgPath)
	doc["homeserver"]["address"] = e.hs.URL()
	writeYAML(t, e.cfgPath, doc)
	var err error
	if e.cfg, err = config.Load(e.cfgPath); err != nil {
		t.Fatal(err)
	}
	if err := e.cfg.Validate(); err != nil {
		t.Fatalf("config after -g: %v", err)
	}
	ctx := t.Context()
	if e.db, err = database.Open(ctx, e.dsn, database.Options{MaxConns: 4}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.db.Close)
	if _, err := e.db.Migrate(ctx, migrations.FS()); err != nil {
		t.Fatal(err)
	}
	e.puppets = matrix.NewPuppets(matrix.PuppetsConfig{HomeserverURL: e.hs.URL(), Domain: "localhost",
		ASToken: e.cfg.AppService.ASToken, BotLocalpart: e.cfg.AppService.BotUsername, UserPrefix: e.cfg.AppService.UserPrefix,
		DB: e.db, Log: zerolog.Nop()})
	if err := e.puppets.Register(ctx, e.puppets.BotID()); err != nil {
		t.Fatal(err)
	}
	current, old, err := e.cfg.SealKeys()
	if err != nil {
		t.Fatal(err)
	}
	if e.sealer, err = seal.NewSealer(current, old...); err != nil {
		t.Fatal(err)
	}
	if e.m, err = New(Config{DB: e.db, Sealer: e.sealer, Homeserver: e.puppets, Metrics: NewMetrics(prometheus.NewRegistry()),
		Log: zerolog.Nop(), Suite: 1, Stock: testStock, LowWater: testLowWater, CheckInterval: time.Hour,
		Lifetime: 90 * 24 * time.Hour, LastResortGrace: time.Hour}); err != nil {
		t.Fatal(err)
	}
	return e
}

// puppet creates a puppet with devices, as the service does it.
func (e *env) puppet(t *testing.T, name string, devices ...string) []Device {
	t.Helper()
	user := e.puppets.PuppetID(name)
	if err := e.puppets.Register(t.Context(), user); err != nil {
		t.Fatal(err)
	}
	var out []Device
	for _, d := range devices {
		if err := e.puppets.CreateDevice(t.Context(), user, id.DeviceID(d), name+" "+d); err != nil {
			t.Fatal(err)
		}
		out = append(out, Device{UserID: user, DeviceID: id.DeviceID(d)})
	}
	return out
}

func (e *env) held(t *testing.T, d Device) int {
	t.Helper()
	counts, err := e.puppets.OneTimeKeyCounts(t.Context(), d.UserID, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	return counts[KeyPackageAlgorithm(1)]
}

// ready reports whether d has its identity, its device keys uploaded and
// cross-signed, and a full stock on the homeserver.
func (e *env) ready(t *testing.T, d Device) (bool, error) {
	var sent, xs bool
	err := e.db.QueryRow(t.Context(), `SELECT device_keys_sent_at IS NOT NULL, cross_signed_at IS NOT NULL
		FROM puppet_device WHERE user_id = $1 AND device_id = $2`, d.UserID, d.DeviceID).Scan(&sent, &xs)
	if err != nil {
		return false, nil
	}
	return sent && xs && e.held(t, d) == testStock, nil
}

// storedKeyPackage looks d's KeyPackage kp up as a Welcome would, by its
// ref (a hash of the whole KeyPackage: found means it is ours byte for
// byte, re-derived if it is of a batch), and returns its key id and
// whether it is the current last-resort one.
func (e *env) storedKeyPackage(t *testing.T, d Device, kp *message.KeyPackage) (id string, lastResort, found bool) {
	t.Helper()
	s, _ := suite.Lookup(kp.CipherSuite)
	ref := kp.Ref(s)
	_, _, err := e.m.FindKeyPackage(t.Context(), e.db, d, [][]byte{ref})
	if errors.Is(err, ErrUnknownKeyPackage) {
		return "", false, false
	}
	if err != nil {
		t.Fatal(err)
	}
	current, _, err := e.currentLastResort(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return keyID(ref), current == keyID(ref), true
}

// currentLastResort returns the key id of d's current last-resort
// KeyPackage, derived again from its puppet_device row, and whether its
// upload was sent.
func (e *env) currentLastResort(ctx context.Context, d Device) (keyID_ string, sent bool, err error) {
	id, err := e.m.loadIdentity(ctx, e.db, d)
	if err != nil {
		return "", false, err
	}
	if id == nil || id.lastResort == nil {
		return "", false, fmt.Errorf("%s has no current last-resort KeyPackage", d)
	}
	b, secret, err := id.lastResort.derive(e.m.cfg.Sealer, d, id.sig)
	if err != nil {
		return "", false, err
	}
	clear(secret)
	if err := e.db.QueryRow(ctx, `SELECT sent_at IS NOT NULL FROM outbox WHERE txn_id = $1`, id.lastResort.txn).Scan(&sent); err != nil {
		return "", false, err
	}
	return keyID(b.KeyPackage.Ref(id.sig.Suite())), sent, nil
}

// storedCount is how many KeyPackages of d the database holds private
// keys for (unsent: only those whose upload is not sent yet).
func (e *env) storedCount(t *testing.T, d Device, unsent bool) int {
	t.Helper()
	var n int
	err := e.db.QueryRow(t.Context(), `SELECT
		(SELECT count(*) FROM key_package k JOIN outbox o ON o.txn_id = k.upload_txn
		 WHERE k.user_id = $1 AND k.device_id = $2 AND (NOT $3 OR o.sent_at IS NULL)) +
		(SELECT count(*) FROM puppet_device p JOIN outbox o ON o.txn_id = p.last_resort_txn
		 WHERE p.user_id = $1 AND p.device_id = $2 AND (NOT $3 OR o.sent_at IS NULL)) +
		(SELECT coalesce(sum(length(b.refs) / $4 - b.used), 0) FROM key_package_batch b JOIN outbox o ON o.txn_id = b.upload_txn
		 WHERE b.user_id = $1 AND b.device_id = $2 AND (NOT $3 OR o.sent_at IS NULL))`,
		d.UserID, d.DeviceID, unsent, refPrefixLen).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// batchKeyPackages derives every unused KeyPackage of d's batches, with
// its private keys, and returns them with each batch's PPRF encoding.
func (e *env) batchKeyPackages(t *testing.T, d Device) (kps []*group.KeyPackageBundle, states [][]byte) {
	t.Helper()
	ctx := t.Context()
	sig, err := e.m.SignatureKey(ctx, e.db, d)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := e.db.Query(ctx, `SELECT upload_txn, template, refs, secrets FROM key_package_batch
		WHERE user_id = $1 AND device_id = $2`, d.UserID, d.DeviceID)
	if err != nil {
		t.Fatal(err)
	}
	var txn string
	var template, refs, sealed []byte
	_, err = pgx.ForEachRow(rows, []any{&txn, &template, &refs, &sealed}, func() error {
		state, err := e.m.cfg.Sealer.Open(purposeKeyPackageBatch, batchRow(d, txn), sealed)
		if err != nil {
			return err
		}
		states = append(states, state)
		for i := range len(refs) / refPrefixLen {
			hit, err := e.m.deriveFromBatch(d, sig, txn, template, sealed, i)
			if err != nil {
				return err
			}
			if hit != nil {
				if !bytes.Equal(hit.ref[:refPrefixLen], refs[i*refPrefixLen:(i+1)*refPrefixLen]) {
					return fmt.Errorf("batch %s: KeyPackage %d derived again has another ref", txn, i)
				}
				kps = append(kps, hit.bundle)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return kps, states
}

func (e *env) claimOne(t *testing.T, as, d Device) Claimed {
	t.Helper()
	got, err := e.m.Claim(t.Context(), as, []Device{d})
	if err != nil {
		t.Fatal(err)
	}
	return got[0]
}

// toDevice sends a to-device message from a plain user to one of our
// devices: the homeserver then sends the service a transaction with the
// device's key counts (MSC3202).
func toDevice(t *testing.T, hs *testenv.Homeserver, from testenv.User, d Device) {
	t.Helper()
	body := map[string]any{"messages": map[string]any{string(d.UserID): map[string]any{string(d.DeviceID): map[string]any{"hello": "keys"}}}}
	call(t, hs, http.MethodPut, "/_matrix/client/v3/sendToDevice/org.example.ping/"+hex.EncodeToString([]byte(time.Now().String())), from.AccessToken, body)
}

func call(t *testing.T, hs *testenv.Homeserver, method, path, token string, body any) []byte {
	t.Helper()
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(t.Context(), method, hs.URL()+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, buf.String())
	}
	return buf.Bytes()
}

func TestKeysService(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	s, _ := suite.Lookup(1)
	// Devices that exist before the service first starts get their
	// identity at start-up.
	alice := e.puppet(t, "alice", "ALICE1", "ALICE2")
	bob := e.puppet(t, "bob", "BOB1")
	carol := e.puppet(t, "carol", "CAROL1")[0]
	ours := append(append(append([]Device{}, alice...), bob...), carol)
	svc := startBinary(t, e.bin, e.cfgPath)
	for _, d := range ours {
		waitFor(t, 90*time.Second, d.String()+" identity, cross-signing and full stock", func() (bool, error) { return e.ready(t, d) })
	}
	var stats struct{ claimed, toppedUp, lastResortUsed, forged, forgedRefused, crossSigned, devices int }
	stats.devices = len(ours)

	// Every device's keys are visible to another puppet, signed and
	// cross-signed, and a third puppet claims and verifies a KeyPackage of
	// each.
	targets := append(append([]Device{}, alice...), bob...)
	claims, err := e.m.Claim(ctx, carol, targets)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range claims {
		if c.Refused != nil {
			t.Fatalf("%s: %v", c.Device, c.Refused)
		}
		if !c.CrossSigned {
			t.Errorf("%s: not cross-signed", c.Device)
		}
		stats.claimed++
		if _, lr, found := e.storedKeyPackage(t, c.Device, c.KeyPackage); !found || lr {
			t.Fatalf("%s: claimed KeyPackage is not one of its stored one-time KeyPackages", c.Device)
		}
		if got := e.held(t, c.Device); got != testStock-1 {
			t.Fatalf("%s: homeserver holds %d after one claim, want %d", c.Device, got, testStock-1)
		}
	}
	checkConsume(t, e, claims[0])
	checkDeviceKeysRebuilt(t, e, ours)
	checkUnreadableBatchSkipped(t, e, claims[1])
	checkQueryIndependently(t, e, carol, ours)
	checkCountedOnCommit(t, e, carol)

	// Claims take alice's first device below the low-water mark; the
	// homeserver's count (sent with a transaction about the device) makes
	// the service top it up.
	mallory := e.hs.RegisterUser(t, "mallory", "mallory-password")
	a1 := alice[0]
	for e.held(t, a1) >= testLowWater {
		if c := e.claimOne(t, carol, a1); c.Refused != nil {
			t.Fatal(c.Refused)
		}
		stats.claimed++
	}
	// Synapse sends the count with the next transaction about the
	// device, which a to-device message makes. On a loaded machine it
	// has once sent nothing for three minutes after the first; another
	// message every 20 s gives it another transaction to carry the count
	// (the path under test stays the transaction's count: the device
	// check that would poll the homeserver runs hourly here).
	toDevice(t, e.hs, mallory, a1)
	nudged := time.Now()
	waitFor(t, 3*time.Minute, "top-up of "+a1.String(), func() (bool, error) {
		if time.Since(nudged) > 20*time.Second {
			t.Logf("no top-up of %s %v after the last to-device message; sending another", a1, time.Since(nudged).Round(time.Second))
			toDevice(t, e.hs, mallory, a1)
			nudged = time.Now()
		}
		return e.held(t, a1) == testStock, nil
	})
	stats.toppedUp++

	// Exhausting bob's stock leaves the last-resort KeyPackage, handed out
	// to every later claim until the service replaces it.
	b1 := bob[0]
	for e.held(t, b1) > 0 {
		if c := e.claimOne(t, carol, b1); c.Refused != nil {
			t.Fatal(c.Refused)
		}
		stats.claimed++
	}
	var oldLastResort string
	for range 2 {
		c := e.claimOne(t, carol, b1)
		if c.Refused != nil {
			t.Fatal(c.Refused)
		}
		id, lr, found := e.storedKeyPackage(t, b1, c.KeyPackage)
		if !found || !lr {
			t.Fatal("the claim of an exhausted device did not return its last-resort KeyPackage")
		}
		if oldLastResort != "" && oldLastResort != id {
			t.Fatal("two claims returned different last-resort KeyPackages")
		}
		oldLastResort = id
		stats.claimed++
		stats.lastResortUsed++
	}
	toDevice(t, e.hs, mallory, b1)
	waitFor(t, 60*time.Second, "replacement of the last resort and top-up of "+b1.String(), func() (bool, error) {
		current, sent, err := e.currentLastResort(ctx, b1)
		if err != nil {
			return false, err
		}
		return sent && current != oldLastResort && e.held(t, b1) == testStock, nil
	})
	stats.toppedUp++

	// Forgeries, each uploaded by a misbehaving device through the
	// homeserver, each refused with its reason.
	for _, f := range forgeries(t, e, s) {
		stats.forged++
		c := e.claimOne(t, carol, f.dev)
		if c.Refused == nil {
			t.Errorf("forgery %q accepted", f.name)
			continue
		}
		if c.Refused.Reason != f.want {
			t.Errorf("forgery %q refused as %s (%s), want %s", f.name, c.Refused.Reason, c.Refused.Detail, f.want)
			continue
		}
		stats.forgedRefused++
	}

	// A device created while the service runs, at the sweep's next run
	// after a restart, and a crash between generating its stock and
	// uploading it.
	svc.stop()
	dave := e.puppet(t, "dave", "DAVE1")[0]
	ours = append(ours, dave)
	stats.devices++
	crashBetweenGenerateAndUpload(t, e, dave)
	svc = startBinary(t, e.bin, e.cfgPath)
	waitFor(t, 90*time.Second, dave.String()+" complete after the crash", func() (bool, error) { return e.ready(t, dave) })
	stats.claimed += checkCrashOutcome(t, e, carol, dave)
	svc.stop()

	// The safety net: claims with no transaction about the device take
	// carol below low water; only the periodic check can notice.
	for e.held(t, carol) >= testLowWater {
		if c := e.claimOne(t, alice[0], carol); c.Refused != nil {
			t.Fatal(c.Refused)
		}
		stats.claimed++
	}
	doc := readYAML(t, e.cfgPath)
	doc["keys"]["check_interval"] = "2s"
	writeYAML(t, e.cfgPath, doc)
	svc = startBinary(t, e.bin, e.cfgPath)
	waitFor(t, 60*time.Second, "the periodic check to top up "+carol.String(), func() (bool, error) { return e.held(t, carol) == testStock, nil })
	stats.toppedUp++
	svc.stop()
	stats.crossSigned = checkCrossSigned(t, e, carol, ours)

	// Sealing: a dump holds none of the secrets, and a value moved to
	// another row does not open.
	leaks := checkDump(t, e, ours)
	checkMovedValue(t, e, alice[0], alice[1])
	checkReseal(t, e, ours)

	var uploaded int64
	if err := e.db.QueryRow(ctx, `SELECT coalesce(sum(otk_sent), 0) FROM puppet_device`).Scan(&uploaded); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("keys: devices=%d uploaded=%d claimed=%d topped_up=%d last_resort_used=%d forged=%d forged_refused=%d cross_signed=%d dump_leaks=%d\n",
		stats.devices, uploaded, stats.claimed, stats.toppedUp, stats.lastResortUsed, stats.forged, stats.forgedRefused, stats.crossSigned, leaks)
	if leaks != 0 {
		t.Errorf("the database dump holds %d secrets", leaks)
	}
}

// checkQueryIndependently verifies, without this package's verifier, that
// /keys/query shows each device's credential key under both names and
// self-signing signatures.
// checkConsume consumes the claimed one-time KeyPackage c as a processed
// Welcome does: it is found before and not after, a second Consume is
// refused, and exactly one KeyPackage of the device's batches is gone.
func checkConsume(t *testing.T, e *env, c Claimed) {
	t.Helper()
	ctx := t.Context()
	s, _ := suite.Lookup(c.KeyPackage.CipherSuite)
	ref := c.KeyPackage.Ref(s)
	before, _ := e.batchKeyPackages(t, c.Device)
	if _, _, found := e.storedKeyPackage(t, c.Device, c.KeyPackage); !found {
		t.Fatalf("%s: claimed KeyPackage not found before its Welcome", c.Device)
	}
	if err := e.m.Consume(ctx, &inbound.Work{Q: e.db}, c.Device, ref); err != nil {
		t.Fatal(err)
	}
	if _, _, found := e.storedKeyPackage(t, c.Device, c.KeyPackage); found {
		t.Fatalf("%s: consumed KeyPackage still found", c.Device)
	}
	if err := e.m.Consume(ctx, &inbound.Work{Q: e.db}, c.Device, ref); !errors.Is(err, ErrUnknownKeyPackage) {
		t.Fatalf("%s: consumed twice: %v, want ErrUnknownKeyPackage", c.Device, err)
	}
	after, _ := e.batchKeyPackages(t, c.Device)
	if len(after) != len(before)-1 {
		t.Fatalf("%s: %d KeyPackages derivable after consuming one of %d", c.Device, len(after), len(before))
	}
	for _, b := range after {
		if bytes.Equal(b.KeyPackage.Ref(s), ref) {
			t.Fatalf("%s: the consumed KeyPackage is still derivable", c.Device)
		}
	}
}

// checkCountedOnCommit: a replacement of d's last-resort KeyPackage
// (its Welcome consumed it) is counted once its transaction commits, and
// not by an attempt rolled back.
func checkCountedOnCommit(t *testing.T, e *env, d Device) {
	t.Helper()
	ctx := t.Context()
	replaced := e.m.cfg.Metrics.LastResortReplaced.WithLabelValues("consumed")
	before := testutil.ToFloat64(replaced)
	consume := func(commit bool) {
		t.Helper()
		tx, err := e.db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		id, _, err := e.currentLastResort(ctx, d)
		if err != nil {
			t.Fatalf("%s: last-resort KeyPackage: %v", d, err)
		}
		ref, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil {
			t.Fatal(err)
		}
		w := &inbound.Work{Q: tx, Out: database.NewProducer(tx)}
		if err := e.m.Consume(ctx, w, d, ref); err != nil {
			t.Fatalf("%s: consume the last-resort KeyPackage: %v", d, err)
		}
		if !commit {
			return
		}
		if err := w.Out.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		w.Committed()
	}
	consume(false)
	if got := testutil.ToFloat64(replaced) - before; got != 0 {
		t.Fatalf("%s: a replacement rolled back counted %v", d, got)
	}
	consume(true)
	if got := testutil.ToFloat64(replaced) - before; got != 1 {
		t.Fatalf("%s: a replacement committed counted %v, want 1", d, got)
	}
}

// checkUnreadableBatchSkipped adds a batch row that does not open, whose
// refs claim c's KeyPackage, older than c's own (so looked at first): c
// is still found, and the bad row is logged and counted, not fatal.
func checkUnreadableBatchSkipped(t *testing.T, e *env, c Claimed) {
	t.Helper()
	ctx := t.Context()
	s, _ := suite.Lookup(c.KeyPackage.CipherSuite)
	ref := c.KeyPackage.Ref(s)
	before := testutil.ToFloat64(e.m.cfg.Metrics.UnreadableBatches)
	if _, err := e.db.Exec(ctx, `INSERT INTO key_package_batch (user_id, device_id, upload_txn, template, refs, secrets, not_after, created_at)
		VALUES ($1, $2, '0-bogus', '\x00', $3, '\x01020304', now() + interval '1 day', '2000-01-01')`, c.Device.UserID, c.Device.DeviceID, ref[:refPrefixLen]); err != nil {
		t.Fatal(err)
	}
	if _, _, found := e.storedKeyPackage(t, c.Device, c.KeyPackage); !found {
		t.Fatalf("%s: KeyPackage not found beside an unreadable batch", c.Device)
	}
	if got := testutil.ToFloat64(e.m.cfg.Metrics.UnreadableBatches) - before; got != 1 {
		t.Fatalf("%v unreadable batches counted, want 1", got)
	}
	if _, err := e.db.Exec(ctx, `DELETE FROM key_package_batch WHERE upload_txn = '0-bogus'`); err != nil {
		t.Fatal(err)
	}
}

// checkDeviceKeysRebuilt: no device's keys object is stored, and the one
// rebuilt from its signature key is byte for byte the one its upload
// carried (which the homeserver then cross-signs: a different object
// would fail the cross-signing check of every claim).
func checkDeviceKeysRebuilt(t *testing.T, e *env, devices []Device) {
	t.Helper()
	for _, d := range devices {
		var stored, upload []byte
		err := e.db.QueryRow(t.Context(), `SELECT i.device_keys, o.content FROM puppet_device i JOIN outbox o ON o.txn_id = i.device_keys_txn
			WHERE i.user_id = $1 AND i.device_id = $2`, d.UserID, d.DeviceID).Scan(&stored, &upload)
		if err != nil {
			t.Fatal(err)
		}
		if stored != nil {
			t.Errorf("%s: device keys stored (%d bytes)", d, len(stored))
		}
		var body struct {
			DeviceKeys json.RawMessage `json:"device_keys"`
		}
		if err := json.Unmarshal(upload, &body); err != nil {
			t.Fatal(err)
		}
		ident, err := e.m.loadIdentity(t.Context(), e.db, d)
		if err != nil {
			t.Fatal(err)
		}
		rebuilt, err := ident.signedDeviceKeys()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rebuilt, body.DeviceKeys) {
			t.Errorf("%s: rebuilt device keys differ from the uploaded ones:\n%s\n%s", d, rebuilt, body.DeviceKeys)
		}
	}
}

func checkQueryIndependently(t *testing.T, e *env, as Device, devices []Device) {
	t.Helper()
	raw := queryDevices(t, e, as, devices)
	var answer struct {
		DeviceKeys map[id.UserID]map[id.DeviceID]struct {
			Algorithms []string                     `json:"algorithms"`
			Keys       map[string]string            `json:"keys"`
			Signatures map[string]map[string]string `json:"signatures"`
		} `json:"device_keys"`
		SelfSigning map[id.UserID]struct {
			Keys map[string]string `json:"keys"`
		} `json:"self_signing_keys"`
	}
	if err := json.Unmarshal(raw, &answer); err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		dk, ok := answer.DeviceKeys[d.UserID][d.DeviceID]
		if !ok {
			t.Fatalf("%s not in /keys/query", d)
		}
		cred := dk.Keys[CredentialKeyID(1, d.DeviceID)]
		if cred == "" || dk.Keys["ed25519:"+string(d.DeviceID)] != cred || len(dk.Algorithms) != 1 || dk.Algorithms[0] != Algorithm(1) {
			t.Fatalf("%s: published keys %v, algorithms %v", d, dk.Keys, dk.Algorithms)
		}
		sigs := dk.Signatures[string(d.UserID)]
		if sigs[CredentialKeyID(1, d.DeviceID)] == "" || sigs["ed25519:"+string(d.DeviceID)] == "" {
			t.Fatalf("%s: not self-signed under both names: %v", d, sigs)
		}
		ssk := answer.SelfSigning[d.UserID].Keys
		if len(ssk) != 1 {
			t.Fatalf("%s: self-signing key %v", d.UserID, ssk)
		}
		for name := range ssk {
			if sigs[name] == "" {
				t.Fatalf("%s: no signature by the self-signing key %s", d, name)
			}
		}
	}
}

// queryDevices runs /keys/query as as for the users of devices.
func queryDevices(t *testing.T, e *env, as Device, devices []Device) json.RawMessage {
	t.Helper()
	var users []id.UserID
	for _, d := range devices {
		users = append(users, d.UserID)
	}
	raw, err := e.puppets.QueryKeys(t.Context(), as.UserID, users)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type forgery struct {
	name string
	dev  Device
	want Reason
}

// forgeries registers one plain user per forgery, whose device uploads
// DMLS device keys and one forged KeyPackage with its own access token.
func forgeries(t *testing.T, e *env, s *suite.Suite) []forgery {
	t.Helper()
	now := time.Now()
	expired := &group.KeyPackageOptions{Lifetime: &message.Lifetime{NotBefore: uint64(now.Add(-48 * time.Hour).Unix()), NotAfter: uint64(now.Add(-time.Hour).Unix())}}
	s3, _ := suite.Lookup(3)
	cases := []struct {
		name       string
		want       Reason
		badDevKeys bool
		kp         func(d Device, sig *suite.SignaturePrivateKey) string
	}{
		{"credential names another device", ReasonCredential, false, func(d Device, sig *suite.SignaturePrivateKey) string {
			return keyPackageValue(t, Device{d.UserID, "OTHERDEVICE"}.Credential(), sig, nil, nil)
		}},
		{"leaf signature key is not the credential key", ReasonSignatureKey, false, func(d Device, _ *suite.SignaturePrivateKey) string {
			other, _ := s.GenerateSignatureKey()
			return keyPackageValue(t, d.Credential(), other, nil, nil)
		}},
		{"bad KeyPackage signature", ReasonSignature, false, func(d Device, sig *suite.SignaturePrivateKey) string {
			return keyPackageValue(t, d.Credential(), sig, nil, func(kp *message.KeyPackage) { kp.Signature[3] ^= 0x40 })
		}},
		{"another suite", ReasonSuite, false, func(d Device, sig *suite.SignaturePrivateKey) string {
			k3, err := s3.NewSignaturePrivateKey(sig.Bytes()) // the same Ed25519 key
			if err != nil {
				t.Fatal(err)
			}
			return keyPackageValue(t, d.Credential(), k3, nil, nil)
		}},
		{"expired lifetime", ReasonLifetime, false, func(d Device, sig *suite.SignaturePrivateKey) string {
			return keyPackageValue(t, d.Credential(), sig, expired, nil)
		}},
		{"device keys with a bad signature", ReasonDeviceSignature, true, func(d Device, sig *suite.SignaturePrivateKey) string {
			return keyPackageValue(t, d.Credential(), sig, nil, nil)
		}},
	}
	var out []forgery
	for i, c := range cases {
		u := e.hs.RegisterUser(t, fmt.Sprintf("forger%d", i), "forger-password")
		d := Device{UserID: id.UserID(u.UserID), DeviceID: id.DeviceID(u.DeviceID)}
		sig, err := s.GenerateSignatureKey()
		if err != nil {
			t.Fatal(err)
		}
		dk, err := buildDeviceKeys(d, sig)
		if err != nil {
			t.Fatal(err)
		}
		if c.badDevKeys {
			var obj map[string]any
			_ = json.Unmarshal(dk, &obj)
			obj["signatures"].(map[string]any)[u.UserID].(map[string]any)[CredentialKeyID(1, d.DeviceID)] = b64.EncodeToString(make([]byte, 64))
			dk, _ = json.Marshal(obj)
		}
		body := map[string]any{"device_keys": json.RawMessage(dk),
			"one_time_keys": map[string]string{KeyPackageAlgorithm(1) + ":forged" + fmt.Sprint(i): c.kp(d, sig)}}
		call(t, e.hs, http.MethodPost, "/_matrix/client/v3/keys/upload", u.AccessToken, body)
		out = append(out, forgery{c.name, d, c.want})
	}
	return out
}

// crashBetweenGenerateAndUpload starts the service while the homeserver
// is down, so that it generates dave's identity and stock and cannot
// upload them, and kills it with SIGKILL once they are committed.
func crashBetweenGenerateAndUpload(t *testing.T, e *env, dave Device) {
	t.Helper()
	e.hs.Stop(t)
	svc := startBinary(t, e.bin, e.cfgPath)
	waitFor(t, 60*time.Second, "dave's stock committed, not uploaded", func() (bool, error) {
		return e.storedCount(t, dave, true) == testStock+1, nil
	})
	svc.kill(t)
	e.hs.Start(t)
}

// checkCrashOutcome claims dave's whole stock: every KeyPackage the
// homeserver hands out is one the database holds, byte for byte, none
// twice, exactly the stock; then the last-resort one. No upload was
// refused (a key id uploaded twice with other contents would be), and
// the restart generated nothing more.
func checkCrashOutcome(t *testing.T, e *env, as, dave Device) (claimed int) {
	t.Helper()
	ctx := t.Context()
	var failed, rows int
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE kind = 'key_upload' AND failed_at IS NOT NULL`).Scan(&failed); err != nil {
		t.Fatal(err)
	}
	if failed != 0 {
		t.Fatalf("%d key uploads were refused", failed)
	}
	if rows = e.storedCount(t, dave, false); rows != testStock+1 {
		t.Fatalf("dave has %d KeyPackages after the crash, want %d", rows, testStock+1)
	}
	seen := map[string]bool{}
	for range testStock {
		c := e.claimOne(t, as, dave)
		if c.Refused != nil {
			t.Fatal(c.Refused)
		}
		id, lr, found := e.storedKeyPackage(t, dave, c.KeyPackage)
		if !found || lr || seen[id] {
			t.Fatalf("claimed KeyPackage after the crash: stored %v, last resort %v, seen %v", found, lr, seen[id])
		}
		seen[id] = true
	}
	c := e.claimOne(t, as, dave)
	if _, lr, found := e.storedKeyPackage(t, dave, c.KeyPackage); c.Refused != nil || !found || !lr {
		t.Fatal("after the stock, the claim did not return the stored last-resort KeyPackage")
	}
	return testStock + 1
}

// checkCrossSigned verifies, from /keys/query, that each device's keys
// are signed by its credential key and by its user's self-signing key,
// itself signed by the master key; it returns how many are.
func checkCrossSigned(t *testing.T, e *env, as Device, devices []Device) int {
	t.Helper()
	raw := queryDevices(t, e, as, devices)
	q, err := parseQuery(raw)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range devices {
		p, err := verifyDeviceKeys(d, e.m.suite, q.devices[d])
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		if !q.crossSigned(d.UserID, p) {
			t.Fatalf("%s: not cross-signed", d)
		}
		n++
	}
	return n
}

// checkDump dumps the database and counts the secrets it finds in it, in
// raw, hex and base64 form: every device's signature key, every stored
// KeyPackage's private keys and the secrets they are derived from, and
// every cross-signing key.
func checkDump(t *testing.T, e *env, devices []Device) int {
	t.Helper()
	ctx := t.Context()
	out, err := exec.Command("/usr/lib/postgresql/15/bin/pg_dump", "--no-owner", e.dsn).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	dump := string(out)
	var secrets [][]byte
	for _, d := range devices {
		sig, err := e.m.SignatureKey(ctx, e.db, d)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, sig.Bytes())
		rows, err := e.db.Query(ctx, `SELECT key_id, private, template IS NOT NULL FROM key_package WHERE user_id = $1 AND device_id = $2`,
			d.UserID, d.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		var refs [][]byte
		for rows.Next() {
			var id string
			var sealed []byte
			var derived bool
			_ = rows.Scan(&id, &sealed, &derived)
			r, err := base64.RawURLEncoding.DecodeString(id)
			if err != nil {
				t.Fatalf("key id %q: %v", id, err)
			}
			refs = append(refs, r)
			if derived {
				// The secret its keys are derived from.
				secret, err := e.m.cfg.Sealer.Open(purposeKeyPackage, keyPackageRow(d, id), sealed)
				if err != nil {
					t.Fatal(err)
				}
				secrets = append(secrets, secret)
			}
		}
		rows.Close()
		for _, r := range refs {
			_, b, err := e.m.FindKeyPackage(ctx, e.db, d, [][]byte{r})
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, b.InitKey.Bytes(), b.EncryptionKey.Bytes())
		}
		if id, err := e.m.loadIdentity(ctx, e.db, d); err != nil || id == nil || id.lastResort == nil {
			t.Fatalf("%s: no current last-resort KeyPackage: %v", d, err)
		} else {
			b, secret, err := id.lastResort.derive(e.m.cfg.Sealer, d, id.sig)
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, secret, b.InitKey.Bytes(), b.EncryptionKey.Bytes())
		}
		batched, states := e.batchKeyPackages(t, d)
		for _, b := range batched {
			secrets = append(secrets, b.InitKey.Bytes(), b.EncryptionKey.Bytes())
		}
		for _, st := range states {
			// The last node secret of the PPRF, its root while unused.
			secrets = append(secrets, st[len(st)-sig.Suite().HashSize():])
		}
		cs, err := e.m.loadCrossSigning(ctx, e.db, d.UserID)
		if err != nil || cs == nil {
			t.Fatalf("cross-signing keys of %s: %v", d.UserID, err)
		}
		secrets = append(secrets, cs.master.Seed(), cs.self.Seed())
	}
	if len(secrets) < 3*len(devices) {
		t.Fatalf("only %d secrets to look for", len(secrets))
	}
	leaks := 0
	lower := strings.ToLower(dump)
	for _, sec := range secrets {
		forms := []string{string(sec), hex.EncodeToString(sec), base64.StdEncoding.EncodeToString(sec),
			base64.RawStdEncoding.EncodeToString(sec), base64.RawURLEncoding.EncodeToString(sec)}
		for i, f := range forms {
			haystack := dump
			if i == 1 {
				haystack = lower
			}
			if strings.Contains(haystack, f) {
				leaks++
				break
			}
		}
	}
	t.Logf("searched a %d-byte dump for %d secrets", len(dump), len(secrets))
	return leaks
}

// checkMovedValue copies a's sealed signature key into b's row: it must
// not open there.
func checkMovedValue(t *testing.T, e *env, a, b Device) {
	t.Helper()
	ctx := t.Context()
	var orig []byte
	if err := e.db.QueryRow(ctx, `SELECT signature_key FROM puppet_device WHERE user_id = $1 AND device_id = $2`, b.UserID, b.DeviceID).Scan(&orig); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(ctx, `UPDATE puppet_device SET signature_key = (SELECT signature_key FROM puppet_device
		WHERE user_id = $1 AND device_id = $2) WHERE user_id = $3 AND device_id = $4`, a.UserID, a.DeviceID, b.UserID, b.DeviceID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.SignatureKey(ctx, e.db, b); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("a signature key moved to another device's row: %v, want seal.ErrOpen", err)
	}
	if _, err := e.db.Exec(ctx, `UPDATE puppet_device SET signature_key = $3 WHERE user_id = $1 AND device_id = $2`, b.UserID, b.DeviceID, orig); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.SignatureKey(ctx, e.db, b); err != nil {
		t.Fatal(err)
	}
}

// checkReseal rotates the master key: the old one goes to old_keys, a new
// one is generated, `keys reseal` re-seals everything, and the values
// then open under the new key alone.
func checkReseal(t *testing.T, e *env, devices []Device) {
	t.Helper()
	ctx := t.Context()
	doc := readYAML(t, e.cfgPath)
	newKey, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	doc["encryption"]["old_keys"] = []string{doc["encryption"]["key"].(string)}
	doc["encryption"]["key"] = newKey.Encode()
	path := filepath.Join(t.TempDir(), "rotated.yaml")
	writeYAML(t, path, doc)
	out, err := exec.Command(e.bin, "-c", path, "keys", "reseal").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "re-sealed ") {
		t.Fatalf("keys reseal: %v\n%s", err, out)
	}
	t.Logf("keys reseal: %s", strings.TrimSpace(string(out)))
	only, _ := seal.NewSealer(newKey)
	m := *e.m
	m.cfg.Sealer = only
	for _, d := range devices {
		if _, err := m.SignatureKey(ctx, e.db, d); err != nil {
			t.Fatalf("after reseal, under the new key alone: %v", err)
		}
	}
	var left int
	kid := newKey.ID()
	if err := e.db.QueryRow(ctx, `SELECT (SELECT count(*) FROM key_package WHERE substring(private from 2 for 8) <> $1) +
		(SELECT count(*) FROM puppet_device WHERE substring(last_resort_secret from 2 for 8) <> $1) +
		(SELECT count(*) FROM key_package_batch WHERE substring(secrets from 2 for 8) <> $1)`, kid[:]).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d KeyPackages not re-sealed", left)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	return testenv.FreePort(t)
}

// TestCrossSignBatch: one signatures upload signs every device of a puppet
// whose keys are up and not signed yet, skipping a device another
// transaction holds; that device's own check then finds nothing to sign
// and asks to look again, and signs it once it is free.
func TestCrossSignBatch(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	erin := e.puppet(t, "erin", "E0", "E1", "E2", "E3", "E4")
	svc := startBinary(t, e.bin, e.cfgPath)
	for _, d := range erin {
		waitFor(t, 90*time.Second, d.String()+" ready", func() (bool, error) { return e.ready(t, d) })
	}
	svc.stop()
	// As if none were signed yet (the homeserver takes the same
	// signatures again).
	if _, err := e.db.Exec(ctx, `UPDATE puppet_device SET cross_signed_at = NULL WHERE user_id = $1`, erin[0].UserID); err != nil {
		t.Fatal(err)
	}
	held, err := e.db.Pool.Begin(ctx) // a worker checking E0
	if err != nil {
		t.Fatal(err)
	}
	defer held.Rollback(ctx)
	if _, err := held.Exec(ctx, `SELECT FROM puppet_device WHERE user_id = $1 AND device_id = $2 FOR UPDATE`,
		erin[0].UserID, erin[0].DeviceID); err != nil {
		t.Fatal(err)
	}
	metrics := e.m.cfg.Metrics
	sign := func(d Device) bool {
		t.Helper()
		var again bool
		if err := e.db.InTx(ctx, func(tx pgx.Tx) error {
			ident, err := e.m.loadIdentity(ctx, tx, d)
			if err != nil {
				return err
			}
			again, err = e.m.crossSignDevice(ctx, tx, ident)
			return err
		}); err != nil {
			t.Fatalf("cross-sign %s: %v", d, err)
		}
		return again
	}
	if again := sign(erin[1]); again {
		t.Fatal("E1 left to another transaction")
	}
	if r, n := testutil.ToFloat64(metrics.CrossSignRequests), testutil.ToFloat64(metrics.CrossSigned); r != 1 || n != 4 {
		t.Fatalf("%v requests signed %v devices, want 1 signing E1-E4", r, n)
	}
	if again := sign(erin[0]); !again {
		t.Fatal("E0, held by another transaction, reported signed")
	}
	if err := held.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if again := sign(erin[0]); again {
		t.Fatal("E0 left to another transaction once free")
	}
	var unsigned int
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM puppet_device WHERE user_id = $1 AND cross_signed_at IS NULL`,
		erin[0].UserID).Scan(&unsigned); err != nil || unsigned != 0 {
		t.Fatalf("%d devices unsigned (%v)", unsigned, err)
	}
	if r, n := testutil.ToFloat64(metrics.CrossSignRequests), testutil.ToFloat64(metrics.CrossSigned); r != 2 || n != 5 {
		t.Fatalf("%v requests signed %v devices, want 2 signing 5", r, n)
	}
	checkCrossSigned(t, e, erin[1], erin)
}
