package matrix_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	mauappservice "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/appservice"
	"github.com/mls-appservice/mls-appservice/config"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/matrix"
	"github.com/mls-appservice/mls-appservice/matrix/attachment"
	"github.com/mls-appservice/mls-appservice/migrations"
)

// mediaEnv is a private Synapse with the service's registration, and the
// service's intake (recording what arrives), sender and puppets running in
// the test process over a fresh database.
type mediaEnv struct {
	hs      *testenv.Homeserver
	db      *database.DB
	cfg     *config.Config
	puppets *matrix.Puppets
	sender  *matrix.Sender
	metrics *matrix.Metrics
	log     zerolog.Logger
}

// openDB opens a fresh, migrated database for the test.
func openDB(t *testing.T) (*database.DB, string) {
	t.Helper()
	dsn := testenv.Database(t)
	db, err := database.Open(t.Context(), dsn, database.Options{MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Migrate(t.Context(), migrations.FS()); err != nil {
		t.Fatal(err)
	}
	return db, dsn
}

func startMediaEnv(t *testing.T) *mediaEnv {
	t.Helper()
	db, dsn := openDB(t)
	port := testenv.FreePort(t)
	// The registration is made as -g makes it; a lone private homeserver
	// is named localhost (the template's server_name).
	cfg, err := config.Parse(fmt.Appendf(nil, `
homeserver: {address: "http://127.0.0.1:1", domain: localhost}
appservice: {address: "http://127.0.0.1:%d", hostname: 127.0.0.1, port: %d, id: media-test}
database: {uri: %q}
encryption: {key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=}
`, port, port, dsn))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := appservice.NewRegistration(cfg)
	if err != nil {
		t.Fatal(err)
	}
	regPath := filepath.Join(t.TempDir(), "registration.yaml")
	if err := reg.Save(regPath); err != nil {
		t.Fatal(err)
	}
	cfg.AppService.ASToken, cfg.AppService.HSToken = reg.AppToken, reg.ServerToken
	hs := testenv.StartSynapse(t, testenv.SynapseOptions{Registrations: []string{regPath}})
	if hs.ServerName() != cfg.Homeserver.Domain {
		t.Fatalf("private homeserver is named %s; the registration's namespace expects %s", hs.ServerName(), cfg.Homeserver.Domain)
	}
	cfg.Homeserver.Address = hs.URL()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	e := &mediaEnv{hs: hs, db: db, cfg: cfg, log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)}
	registry := prometheus.NewRegistry()
	e.metrics = matrix.NewMetrics(registry)
	e.puppets = e.newPuppets(matrix.MediaConfig{})
	e.sender = matrix.NewSender(matrix.SenderConfig{DB: db, Puppets: e.puppets, Metrics: e.metrics,
		Log: e.log.With().Str("component", "sender").Logger(), Workers: 2})
	svc := appservice.NewService(appservice.ServiceConfig{Config: cfg, DB: db, Log: e.log, Registry: registry,
		Metrics: appservice.NewMetrics(registry), Handlers: appservice.Recorder{}.Handlers(),
		Background: []func(context.Context) error{e.sender.Run}})
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("service: %v", err)
		}
	})
	return e
}

// newPuppets returns puppets of the environment's registration with the
// given download bounds (and the shared metrics).
func (e *mediaEnv) newPuppets(media matrix.MediaConfig) *matrix.Puppets {
	return matrix.NewPuppets(matrix.PuppetsConfig{HomeserverURL: e.cfg.Homeserver.Address, Domain: e.cfg.Homeserver.Domain,
		ASToken: e.cfg.AppService.ASToken, BotLocalpart: e.cfg.AppService.BotUsername, UserPrefix: e.cfg.AppService.UserPrefix,
		DB: e.db, Log: e.log.With().Str("component", "puppets").Logger(), Media: media, Metrics: e.metrics})
}

// device registers a puppet and gives it a device.
// client is a client acting as puppet user.
func (e *mediaEnv) client(t *testing.T, user id.UserID) *mautrix.Client {
	t.Helper()
	cli, err := e.puppets.Client(user, "")
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

func (e *mediaEnv) device(t *testing.T, name string, device id.DeviceID) id.UserID {
	t.Helper()
	user := e.puppets.PuppetID(name)
	if err := e.puppets.Register(t.Context(), user); err != nil {
		t.Fatal(err)
	}
	if err := e.puppets.CreateDevice(t.Context(), user, device, name+"'s device"); err != nil {
		t.Fatal(err)
	}
	return user
}

// enqueue adds rows to the outbox in one transaction and wakes the
// sender; add returns the rows' sequence numbers in order.
func (e *mediaEnv) enqueue(t *testing.T, add func(add func(database.OutgoingEvent) int64)) {
	t.Helper()
	err := e.db.InTx(t.Context(), func(tx pgx.Tx) error {
		p := database.NewProducer(tx)
		var addErr error
		add(func(ev database.OutgoingEvent) int64 {
			if addErr != nil {
				return 0
			}
			seq, _, err := p.AddOutgoing(t.Context(), ev)
			addErr = err
			return seq
		})
		if addErr != nil {
			return addErr
		}
		return p.Flush(t.Context())
	})
	if err != nil {
		t.Fatal(err)
	}
	e.sender.Wake()
}

type outboxRow struct {
	sent, failed bool
	result       string
	lastError    string
}

func (e *mediaEnv) row(t *testing.T, seq int64) outboxRow {
	t.Helper()
	var r outboxRow
	err := e.db.QueryRow(t.Context(), `SELECT sent_at IS NOT NULL, failed_at IS NOT NULL,
		coalesce(event_id, content_uri, ''), coalesce(last_error, '') FROM outbox WHERE seq = $1`, seq).
		Scan(&r.sent, &r.failed, &r.result, &r.lastError)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitRow waits until the row is sent or given up on.
func (e *mediaEnv) waitRow(t *testing.T, seq int64) outboxRow {
	t.Helper()
	var r outboxRow
	eventually(t, time.Minute, fmt.Sprintf("outbox row %d finished", seq), func() bool {
		r = e.row(t, seq)
		return r.sent || r.failed
	})
	return r
}

// received waits for the service to record an event matching the
// condition (SQL over inbound_event) and returns its content.
func (e *mediaEnv) received(t *testing.T, what, cond string, args ...any) map[string]json.RawMessage {
	t.Helper()
	var raw []byte
	eventually(t, time.Minute, what, func() bool {
		err := e.db.QueryRow(t.Context(), `SELECT raw FROM inbound_event WHERE `+cond+` ORDER BY seq LIMIT 1`, args...).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		return true
	})
	var ev struct {
		Content map[string]json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return ev.Content
}

func TestMediaOffload(t *testing.T) {
	began := time.Now()
	e := startMediaEnv(t)
	ctx := t.Context()
	alice := e.device(t, "alice", "ALICEDEV")
	bob := e.device(t, "bob", "BOBDEV")
	carol := e.device(t, "carol", "CAROLDEV")
	aliceCli := e.client(t, alice)
	room, err := aliceCli.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{bob}})
	if err != nil {
		t.Fatal(err)
	}
	bobCli := e.client(t, bob)
	if _, err := bobCli.JoinRoom(ctx, room.RoomID.String(), nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("private Synapse, service, two puppets and a room ready after %v", time.Since(began).Round(time.Millisecond))

	commitPayload := randomBytes(300 << 10)
	welcomePayload := randomBytes(70 << 10)
	commitCiphertext, commitFile := attachment.Encrypt(commitPayload)
	welcomeCiphertext, welcomeFile := attachment.Encrypt(welcomePayload)
	var upCommit, upWelcome int64

	t.Run("commit and Welcome offloaded through the outbox", func(t *testing.T) {
		start := time.Now()
		var commit, welcome int64
		e.enqueue(t, func(add func(database.OutgoingEvent) int64) {
			upCommit = add(database.OutgoingEvent{Kind: database.MediaUpload, UserID: alice.String(), DeviceID: "ALICEDEV",
				Content: commitCiphertext})
			upWelcome = add(database.OutgoingEvent{Kind: database.MediaUpload, UserID: alice.String(), DeviceID: "ALICEDEV",
				Content: welcomeCiphertext})
			commit = add(database.OutgoingEvent{Kind: database.RoomEvent, UserID: alice.String(), DeviceID: "ALICEDEV",
				RoomID: room.RoomID.String(), EventType: "org.example.offload.commit",
				Content: mustJSON(t, map[string]any{"epoch": 1, "ciphertext_file": commitFile}),
				After:   upCommit, FillField: "ciphertext_file.url"})
			welcome = add(database.OutgoingEvent{Kind: database.ToDevice, UserID: alice.String(), DeviceID: "ALICEDEV",
				EventType: "org.example.offload.welcome", ToUserID: bob.String(), ToDeviceID: "BOBDEV",
				Content: mustJSON(t, map[string]any{"room_id": room.RoomID, "ciphertext_file": welcomeFile}),
				AlsoTo:  map[string][]string{carol.String(): {"CAROLDEV"}},
				After:   commit, FillField: "commit_event",
				AlsoAfter: []database.Dependency{{Seq: upWelcome, FillField: "ciphertext_file.url"}}})
		})
		w := e.waitRow(t, welcome)
		if !w.sent {
			t.Fatalf("Welcome not sent: %s", w.lastError)
		}
		c, uc, uw := e.row(t, commit), e.row(t, upCommit), e.row(t, upWelcome)
		if !strings.HasPrefix(uc.result, "mxc://"+e.hs.ServerName()+"/") || !strings.HasPrefix(uw.result, "mxc://") || !c.sent {
			t.Fatalf("uploads made %q and %q, commit %+v", uc.result, uw.result, c)
		}
		t.Logf("two uploads (%d and %d bytes), the commit and the Welcome sent in %v",
			len(commitCiphertext), len(welcomeCiphertext), time.Since(start).Round(time.Millisecond))

		commitContent := e.received(t, "the commit event", `kind = 'room' AND event_id = $1`, c.result)
		welcomeContent := e.received(t, "the Welcome to bob's device", `kind = 'to_device' AND to_user_id = $1 AND to_device_id = 'BOBDEV' AND event_type = 'org.example.offload.welcome'`, bob.String())
		// One row, one request: carol, a further recipient, gets the
		// same content, filled in alike.
		carolContent := e.received(t, "the Welcome to carol's device", `kind = 'to_device' AND to_user_id = $1 AND to_device_id = 'CAROLDEV' AND event_type = 'org.example.offload.welcome'`, carol.String())
		for _, got := range []map[string]json.RawMessage{welcomeContent, carolContent} {
			var commitEvent string
			if err := json.Unmarshal(got["commit_event"], &commitEvent); err != nil || commitEvent != c.result {
				t.Fatalf("Welcome names commit %s (%v), the commit is %s", got["commit_event"], err, c.result)
			}
		}
		if !bytes.Equal(welcomeContent["ciphertext_file"], carolContent["ciphertext_file"]) {
			t.Fatalf("bob's and carol's Welcomes differ: %s, %s", welcomeContent["ciphertext_file"], carolContent["ciphertext_file"])
		}
		for _, tt := range []struct {
			name    string
			content map[string]json.RawMessage
			url     string
			want    []byte
		}{{"commit", commitContent, uc.result, commitPayload}, {"Welcome", welcomeContent, uw.result, welcomePayload}} {
			f, err := attachment.Parse(tt.content["ciphertext_file"])
			if err != nil {
				t.Fatalf("%s: the file object as received: %v", tt.name, err)
			}
			if f.URL != tt.url {
				t.Fatalf("%s names %s, its upload made %s", tt.name, f.URL, tt.url)
			}
			start := time.Now()
			got, err := e.puppets.DownloadAttachment(ctx, bob, "BOBDEV", f)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("%s: downloaded %d bytes that are not the payload", tt.name, len(got))
			}
			t.Logf("%s: %d bytes downloaded by bob through authenticated media and decrypted in %v",
				tt.name, len(got), time.Since(start).Round(time.Millisecond))
		}
		var left int
		if err := e.db.QueryRow(ctx, `SELECT length(content) FROM outbox WHERE seq = $1`, upCommit).Scan(&left); err != nil || left != 0 {
			t.Fatalf("the uploaded row still holds %d bytes (%v)", left, err)
		}
		if n := testutil.ToFloat64(e.metrics.MediaDownloads.WithLabelValues("ok")); n != 2 {
			t.Fatalf("%v downloads counted ok, want 2", n)
		}
	})

	t.Run("tampered media refused", func(t *testing.T) {
		// The media repository holds other bytes than the file object
		// names: one flipped byte of the stored ciphertext.
		payload := randomBytes(300 << 10)
		ciphertext, f := attachment.Encrypt(payload)
		tampered := bytes.Clone(ciphertext)
		tampered[len(tampered)/2] ^= 0x40
		var up int64
		e.enqueue(t, func(add func(database.OutgoingEvent) int64) {
			up = add(database.OutgoingEvent{Kind: database.MediaUpload, UserID: alice.String(), DeviceID: "ALICEDEV", Content: tampered})
		})
		r := e.waitRow(t, up)
		if !r.sent {
			t.Fatalf("upload: %s", r.lastError)
		}
		f.URL = r.result
		_, err := e.puppets.DownloadAttachment(ctx, bob, "BOBDEV", f)
		if !errors.Is(err, attachment.ErrHashMismatch) || matrix.DownloadReason(err) != "tampered" {
			t.Fatalf("download of tampered media: %v (reason %s), want a hash mismatch", err, matrix.DownloadReason(err))
		}
		// Bytes uploaded under another file object's hash: the Welcome's
		// file object pointed at the commit's media.
		other := *welcomeFile
		other.URL = e.row(t, upCommit).result
		if _, err := e.puppets.DownloadAttachment(ctx, bob, "BOBDEV", &other); !errors.Is(err, attachment.ErrHashMismatch) {
			t.Fatalf("download of another payload's media: %v, want a hash mismatch", err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("unknown media id refused", func(t *testing.T) {
		f := *commitFile
		f.URL = "mxc://" + e.hs.ServerName() + "/NoSuchMediaHere0123456789"
		start := time.Now()
		_, err := e.puppets.DownloadAttachment(ctx, bob, "BOBDEV", &f)
		if !errors.Is(err, matrix.ErrMediaNotFound) || matrix.DownloadReason(err) != "not_found" {
			t.Fatalf("download of unknown media: %v", err)
		}
		if !strings.Contains(err.Error(), "(1 attempts)") || !strings.Contains(err.Error(), "M_NOT_FOUND") {
			t.Fatalf("error %q: want one attempt and the homeserver's code", err)
		}
		t.Logf("refused in %v: %v", time.Since(start).Round(time.Millisecond), err)
	})

	t.Run("larger than the limit refused", func(t *testing.T) {
		small := e.newPuppets(matrix.MediaConfig{MaxDownloadBytes: 100 << 10})
		f := *commitFile
		f.URL = e.row(t, upCommit).result
		_, err := small.DownloadAttachment(ctx, bob, "BOBDEV", &f)
		if !errors.Is(err, matrix.ErrMediaTooLarge) || matrix.DownloadReason(err) != "too_large" {
			t.Fatalf("download over the limit: %v", err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("bad file object refused without a request", func(t *testing.T) {
		f := *commitFile
		f.URL = "https://" + e.hs.ServerName() + "/media"
		for _, file := range []*attachment.File{nil, &f} {
			_, err := e.puppets.DownloadAttachment(ctx, bob, "BOBDEV", file)
			if !errors.Is(err, attachment.ErrBadFile) || matrix.DownloadReason(err) != "bad_file" {
				t.Fatalf("download of %v: %v", file, err)
			}
		}
	})

	t.Run("unreachable homeserver retried, then reported", func(t *testing.T) {
		closed := fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t))
		p := matrix.NewPuppets(matrix.PuppetsConfig{HomeserverURL: closed, Domain: e.cfg.Homeserver.Domain,
			ASToken: e.cfg.AppService.ASToken, BotLocalpart: e.cfg.AppService.BotUsername, UserPrefix: e.cfg.AppService.UserPrefix,
			DB: e.db, Log: e.log, Media: matrix.MediaConfig{DownloadAttempts: 3, DownloadBackoff: 20 * time.Millisecond}})
		f := *commitFile
		f.URL = e.row(t, upCommit).result
		_, err = p.DownloadAttachment(ctx, bob, "BOBDEV", &f)
		if !errors.Is(err, matrix.ErrMediaUnavailable) || !strings.Contains(err.Error(), "(3 attempts)") {
			t.Fatalf("download from a closed port: %v", err)
		}
	})

	t.Run("refused upload gives up the rows waiting for it", func(t *testing.T) {
		// A user of the namespace that was never registered: Synapse
		// refuses the appservice acting as it (a 4xx, permanent).
		ghost := e.puppets.PuppetID("ghost")
		ciphertext, f := attachment.Encrypt([]byte("never stored"))
		var up, ev int64
		e.enqueue(t, func(add func(database.OutgoingEvent) int64) {
			up = add(database.OutgoingEvent{Kind: database.MediaUpload, UserID: ghost.String(), DeviceID: "GHOSTDEV", Content: ciphertext})
			ev = add(database.OutgoingEvent{Kind: database.RoomEvent, UserID: alice.String(), DeviceID: "ALICEDEV",
				RoomID: room.RoomID.String(), EventType: "org.example.offload.commit",
				Content: mustJSON(t, map[string]any{"ciphertext_file": f}), After: up, FillField: "ciphertext_file.url"})
		})
		u := e.waitRow(t, up)
		r := e.waitRow(t, ev)
		if !u.failed || r.sent || !r.failed || !strings.Contains(r.lastError, "given up") {
			t.Fatalf("upload %+v, event %+v: want both given up", u, r)
		}
		t.Logf("upload refused: %s", u.lastError)
	})
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMediaOverFederation downloads media that a user of another
// homeserver uploaded: our homeserver fetches it over federation for the
// authenticated download, as it will for peers on other deployments.
func TestMediaOverFederation(t *testing.T) {
	ctx := t.Context()
	db, _ := openDB(t)
	// Federated server names are localhost:<port>, known only once the
	// homeservers run, so the namespace matches any server name.
	cfg, err := config.Parse([]byte(`
homeserver: {address: "http://127.0.0.1:1", domain: localhost}
appservice: {address: "http://127.0.0.1:9", id: media-fed-test}
`))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := appservice.NewRegistration(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg.Namespaces.UserIDs = mauappservice.NamespaceList{{Regex: "^@(mlsbot|mls_.*):.*$", Exclusive: true}}
	regPath := filepath.Join(t.TempDir(), "registration.yaml")
	if err := reg.Save(regPath); err != nil {
		t.Fatal(err)
	}
	fed := testenv.StartFederation(t, testenv.FederationOptions{B: testenv.SynapseOptions{Registrations: []string{regPath}}})
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	puppets := func(media matrix.MediaConfig) *matrix.Puppets {
		return matrix.NewPuppets(matrix.PuppetsConfig{HomeserverURL: fed.B.URL(), Domain: fed.B.ServerName(),
			ASToken: reg.AppToken, BotLocalpart: "mlsbot", UserPrefix: "mls_", DB: db, Log: log, Media: media})
	}
	onB := puppets(matrix.MediaConfig{})
	dave := onB.PuppetID("dave")
	if err := onB.Register(ctx, dave); err != nil {
		t.Fatal(err)
	}
	carol := fed.A.RegisterUser(t, "carol", "correct horse")
	carolCli, err := mautrix.NewClient(fed.A.URL(), id.UserID(carol.UserID), carol.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	upload := func(b []byte) string {
		t.Helper()
		resp, err := carolCli.UploadBytes(ctx, b, "application/octet-stream")
		if err != nil {
			t.Fatal(err)
		}
		return resp.ContentURI.String()
	}

	payload := randomBytes(300 << 10)
	ciphertext, f := attachment.Encrypt(payload)
	f.URL = upload(ciphertext)
	if !strings.HasPrefix(f.URL, "mxc://"+fed.A.ServerName()+"/") {
		t.Fatalf("carol's upload is %s, want media of %s", f.URL, fed.A.ServerName())
	}
	start := time.Now()
	got, err := onB.DownloadAttachment(ctx, dave, "", f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("remote media decrypted to other bytes")
	}
	t.Logf("%d bytes of %s's media downloaded through %s in %v", len(got), fed.A.ServerName(), fed.B.ServerName(),
		time.Since(start).Round(time.Millisecond))

	tampered := bytes.Clone(ciphertext)
	tampered[0] ^= 1
	g := *f
	g.URL = upload(tampered)
	if _, err := onB.DownloadAttachment(ctx, dave, "", &g); !errors.Is(err, attachment.ErrHashMismatch) {
		t.Fatalf("tampered remote media: %v, want a hash mismatch", err)
	}

	unknown := *f
	unknown.URL = "mxc://" + fed.A.ServerName() + "/NoSuchMediaHere0123456789"
	_, err = onB.DownloadAttachment(ctx, dave, "", &unknown)
	t.Logf("unknown remote media: reason %s: %v", matrix.DownloadReason(err), err)
	if !errors.Is(err, matrix.ErrMediaNotFound) {
		t.Fatalf("unknown remote media: %v, want not found", err)
	}

	// Cut off from the uploader's homeserver, ours still serves what it
	// cached; what it never fetched is unavailable, a reason to retry.
	uncached := *f
	uncached.URL = upload(ciphertext)
	fed.Partition()
	if got, err := onB.DownloadAttachment(ctx, dave, "", f); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("cached remote media during a partition: %v", err)
	}
	cut := puppets(matrix.MediaConfig{DownloadAttempts: 2, DownloadBackoff: 20 * time.Millisecond, DownloadTimeout: 30 * time.Second})
	start = time.Now()
	_, err = cut.DownloadAttachment(ctx, dave, "", &uncached)
	t.Logf("uncached remote media during a partition, after %v: reason %s: %v", time.Since(start).Round(time.Millisecond),
		matrix.DownloadReason(err), err)
	if !errors.Is(err, matrix.ErrMediaUnavailable) {
		t.Fatalf("uncached remote media during a partition: %v, want unavailable", err)
	}
	fed.Heal(t)
	if got, err := onB.DownloadAttachment(ctx, dave, "", &uncached); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("after the partition healed: %v", err)
	}
}
