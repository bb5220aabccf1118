package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// TestRenderSynapseConfig checks the derived configuration without
// starting Synapse, including a template whose database is PostgreSQL
// (where the compose stack is going).
func TestRenderSynapseConfig(t *testing.T) {
	tmpl, err := os.ReadFile("../../deploy/synapse/homeserver.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var withPostgres map[string]any
	if err := yaml.Unmarshal(tmpl, &withPostgres); err != nil {
		t.Fatal(err)
	}
	withPostgres["database"] = map[string]any{
		"name": "psycopg2",
		"args": map[string]any{"user": "synapse", "host": "postgres", "cp_min": 5},
	}
	pgTmpl, err := yaml.Marshal(withPostgres)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := newLinkSwitch("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.close()
	fed := &federationListener{port: 4321, proxy: proxy}

	for _, tc := range []struct {
		name string
		tmpl []byte
		fed  *federationListener
	}{
		{"template", tmpl, nil},
		{"postgres template", pgTmpl, nil},
		{"federation", tmpl, fed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out, serverName, err := renderSynapseConfig(tc.tmpl, synapseSettings{
				dir: dir, clientPort: 1234, registrations: []string{"/a.yaml", "/b.yaml"},
				sharedSecret: "s3cret", federation: tc.fed,
			})
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				ServerName string `yaml:"server_name"`
				Database   struct {
					Name string         `yaml:"name"`
					Args map[string]any `yaml:"args"`
				} `yaml:"database"`
				Listeners []struct {
					Port      int      `yaml:"port"`
					Bind      []string `yaml:"bind_addresses"`
					TLS       bool     `yaml:"tls"`
					Resources []struct {
						Names []string `yaml:"names"`
					} `yaml:"resources"`
				} `yaml:"listeners"`
				Registrations  []string       `yaml:"app_service_config_files"`
				Secret         string         `yaml:"registration_shared_secret"`
				Experimental   map[string]any `yaml:"experimental_features"`
				VerifyCerts    *bool          `yaml:"federation_verify_certificates"`
				IPWhitelist    []string       `yaml:"ip_range_whitelist"`
				Federation     map[string]any `yaml:"federation"`
				SigningKeyPath string         `yaml:"signing_key_path"`
			}
			if err := yaml.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.ServerName != serverName {
				t.Errorf("server_name %q, reported %q", cfg.ServerName, serverName)
			}
			wantDB := filepath.Join(dir, "homeserver.db")
			if cfg.Database.Name != "sqlite3" || len(cfg.Database.Args) != 1 || cfg.Database.Args["database"] != wantDB {
				t.Errorf("database %+v, want only sqlite3 at %s", cfg.Database, wantDB)
			}
			if !strings.HasPrefix(cfg.SigningKeyPath, dir) {
				t.Errorf("signing_key_path %s outside the data directory", cfg.SigningKeyPath)
			}
			if !slices.Equal(cfg.Registrations, []string{"/a.yaml", "/b.yaml"}) || cfg.Secret != "s3cret" {
				t.Errorf("registrations %v, secret %q", cfg.Registrations, cfg.Secret)
			}
			// Kept from the template: DESIGN §7's flags.
			if cfg.Experimental["msc2409_to_device_messages_enabled"] != true {
				t.Errorf("experimental_features not kept: %v", cfg.Experimental)
			}
			if l := cfg.Listeners[0]; l.Port != 1234 || !slices.Equal(l.Bind, []string{"127.0.0.1"}) || l.TLS {
				t.Errorf("client listener %+v", l)
			}
			if tc.fed == nil {
				if serverName != "localhost" || len(cfg.Listeners) != 1 || cfg.VerifyCerts != nil {
					t.Errorf("lone homeserver: server name %q, %d listeners, verify %v", serverName, len(cfg.Listeners), cfg.VerifyCerts)
				}
				return
			}
			if want := fmt.Sprintf("localhost:%d", proxy.port()); serverName != want {
				t.Errorf("server name %q, want %q", serverName, want)
			}
			if len(cfg.Listeners) != 2 || cfg.Listeners[1].Port != 4321 || !cfg.Listeners[1].TLS ||
				!slices.Equal(cfg.Listeners[1].Resources[0].Names, []string{"federation"}) {
				t.Errorf("federation listener %+v", cfg.Listeners)
			}
			if cfg.VerifyCerts == nil || *cfg.VerifyCerts || !slices.Contains(cfg.IPWhitelist, "127.0.0.0/8") {
				t.Errorf("verify %v, ip_range_whitelist %v", cfg.VerifyCerts, cfg.IPWhitelist)
			}
			if cfg.Federation["destination_max_retry_interval"] != 2000 {
				t.Errorf("federation retry settings %v", cfg.Federation)
			}
		})
	}
}

// TestPrivateSynapse runs one private homeserver with two appservices:
// each receives the transactions of its own namespace; a restart keeps
// users and, on SQLite, reuses transaction ids.
func TestPrivateSynapse(t *testing.T) {
	ctx := t.Context()
	as1 := startAppservice(t, "as1")
	as2 := startAppservice(t, "as2")
	hs := StartSynapse(t, SynapseOptions{Registrations: []string{as1.registration, as2.registration}})
	if hs.ServerName() != "localhost" {
		t.Errorf("server name %q, want the template's localhost", hs.ServerName())
	}

	// Each appservice's user creates a room and speaks in it.
	sent := map[*appservice]id.EventID{}
	clients := map[*appservice]*mautrix.Client{}
	for _, as := range []*appservice{as1, as2} {
		cli := as.puppet(t, hs, as.id+"_alice")
		room, err := cli.CreateRoom(ctx, &mautrix.ReqCreateRoom{})
		if err != nil {
			t.Fatalf("%s: create room: %v", as.id, err)
		}
		resp, err := cli.SendText(ctx, room.RoomID, "hello "+as.id)
		if err != nil {
			t.Fatalf("%s: send: %v", as.id, err)
		}
		sent[as] = resp.EventID
		clients[as] = cli
	}
	for as, ev := range sent {
		txn, took := as.waitEvent(t, ev, 30*time.Second)
		t.Logf("%s got its message in transaction %s after %v", as.id, txn, took.Round(time.Millisecond))
	}
	if as1.saw(sent[as2]) || as2.saw(sent[as1]) {
		t.Error("an appservice received an event outside its namespace")
	}

	// Restart: a plain user registered before is still there.
	const password = "correct horse"
	alice := hs.RegisterUser(t, "alice", password)
	if alice.UserID != "@alice:localhost" || alice.AccessToken == "" {
		t.Fatalf("registered %+v", alice)
	}
	before := as1.txnIDs()
	hs.Restart(t)
	cli, err := mautrix.NewClient(hs.URL(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	login, err := cli.Login(ctx, &mautrix.ReqLogin{
		Type:       mautrix.AuthTypePassword,
		Identifier: mautrix.UserIdentifier{Type: mautrix.IdentifierTypeUser, User: "alice"},
		Password:   password,
	})
	if err != nil || login.UserID.String() != alice.UserID {
		t.Fatalf("password login after restart: %v (%+v)", err, login)
	}
	cli.AccessToken = alice.AccessToken
	if who, err := cli.Whoami(ctx); err != nil || who.UserID.String() != alice.UserID {
		t.Fatalf("token from before the restart: %v (%+v)", err, who)
	}

	// The restarted SQLite homeserver starts its transaction ids again
	// (DESIGN §7): what the restart test of the service relies on.
	resp, err := clients[as1].SendText(ctx, mustRoom(t, clients[as1]), "after restart")
	if err != nil {
		t.Fatal(err)
	}
	txn, took := as1.waitEvent(t, resp.EventID, 30*time.Second)
	t.Logf("after restart, as1 got a message in transaction %s after %v (ids before: %v)", txn, took.Round(time.Millisecond), before)
	if !slices.Contains(before, txn) {
		t.Errorf("transaction id %s after restart is new; DESIGN §7 says SQLite Synapse reuses them", txn)
	}
}

// TestFederation runs two federated homeservers: a room on A joined from
// B carries messages both ways; a partition holds them back and Heal
// delivers them.
func TestFederation(t *testing.T) {
	ctx := t.Context()
	fed := StartFederation(t, FederationOptions{})
	if fed.A.ServerName() == fed.B.ServerName() || !strings.HasPrefix(fed.A.ServerName(), "localhost:") {
		t.Fatalf("server names %s and %s", fed.A.ServerName(), fed.B.ServerName())
	}
	alice := userClient(t, fed.A, fed.A.RegisterUser(t, "alice", "pw-alice"))
	bob := userClient(t, fed.B, fed.B.RegisterUser(t, "bob", "pw-bob"))

	room, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat"})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if _, err := bob.JoinRoom(ctx, room.RoomID.String(), &mautrix.ReqJoinRoom{Via: []string{fed.A.ServerName()}}); err != nil {
		t.Fatalf("join over federation: %v", err)
	}
	t.Logf("bob on B joined alice's room on A in %v", time.Since(began).Round(time.Millisecond))

	const bound = 30 * time.Second
	links := []struct {
		name     string
		from, to *mautrix.Client
	}{{"A→B", alice, bob}, {"B→A", bob, alice}}
	for _, l := range links {
		resp, err := l.from.SendText(ctx, room.RoomID, "hello "+l.name)
		if err != nil {
			t.Fatal(err)
		}
		took := waitRemoteEvent(t, l.to, room.RoomID, resp.EventID, bound)
		t.Logf("%s: delivered in %v", l.name, took.Round(time.Millisecond))
	}

	fed.Partition()
	held := make([]id.EventID, len(links))
	for i, l := range links {
		resp, err := l.from.SendText(ctx, room.RoomID, "during the partition "+l.name)
		if err != nil {
			t.Fatalf("send during the partition: %v", err)
		}
		held[i] = resp.EventID
	}
	// Undelivered for several times the latency measured above.
	const hold = 2 * time.Second
	time.Sleep(hold)
	for i, l := range links {
		if _, err := l.to.GetEvent(ctx, room.RoomID, held[i]); err == nil {
			t.Errorf("%s: a message sent during the partition arrived within %v", l.name, hold)
		}
	}

	healing := time.Now()
	fed.Heal(t)
	t.Logf("Heal returned after %v", time.Since(healing).Round(time.Millisecond))
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Go(func() {
			waitRemoteEvent(t, l.to, room.RoomID, held[i], bound)
			t.Logf("%s: message held by the partition delivered %v after Heal was called", l.name, time.Since(healing).Round(time.Millisecond))
		})
	}
	wg.Wait()

	// A destination marked down: B's key query to A fails at once (such
	// queries are not retried) and B backs off from A, so a message sent
	// then is queued, not retried; once the backoff has expired nothing
	// but a wake-up sends it: Heal's, or Synapse's one-minute sweep.
	fed.Partition()
	carol := id.NewUserID("carol", fed.A.ServerName())
	if _, err := bob.QueryKeys(ctx, &mautrix.ReqQueryKeys{DeviceKeys: mautrix.DeviceKeysRequest{carol: {}}}); err != nil {
		t.Fatal(err)
	}
	queued, err := bob.SendText(ctx, room.RoomID, "queued behind B's backoff")
	if err != nil {
		t.Fatal(err)
	}
	if retryLastTS(t, fed.B, fed.A.ServerName()) == 0 {
		t.Error("B does not back off from A after a failed request: the case below is not exercised")
	}
	time.Sleep(time.Second) // longer than the backoff (destination_min_retry_interval)
	healing = time.Now()
	fed.Heal(t)
	waitRemoteEvent(t, alice, room.RoomID, queued.EventID, bound)
	t.Logf("B→A: message queued while B had marked A down delivered %v after Heal was called", time.Since(healing).Round(time.Millisecond))
	if ts := retryLastTS(t, fed.B, fed.A.ServerName()); ts != 0 {
		t.Errorf("B still backs off from A after Heal (retry_last_ts %d)", ts)
	}
}

// retryLastTS reports when the homeserver last failed to reach
// destination and started backing off, 0 if it is not backing off.
func retryLastTS(t *testing.T, hs *Homeserver, destination string) int64 {
	t.Helper()
	token, err := hs.admin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		RetryLastTS int64 `json:"retry_last_ts"`
	}
	if err := hs.call(t.Context(), http.MethodGet, "/_synapse/admin/v1/federation/destinations/"+url.PathEscape(destination), token, nil, &d); err != nil {
		t.Fatal(err)
	}
	return d.RetryLastTS
}

// waitRemoteEvent polls the client's homeserver until it has the event
// and reports how long that took. The event lookup reads only the local
// store, so success means federation delivered it.
func waitRemoteEvent(t *testing.T, cli *mautrix.Client, room id.RoomID, ev id.EventID, bound time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), bound)
	defer cancel()
	for {
		_, err := cli.GetEvent(ctx, room, ev)
		switch {
		case err == nil:
			return time.Since(began)
		case ctx.Err() != nil:
			t.Errorf("%s: event %s not delivered within %v", cli.UserID, ev, bound)
			return time.Since(began)
		case !errors.Is(err, mautrix.MNotFound):
			t.Errorf("%s: get event %s: %v", cli.UserID, ev, err)
			return time.Since(began)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func userClient(t *testing.T, hs *Homeserver, u User) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(hs.URL(), id.UserID(u.UserID), u.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	return cli
}

// mustRoom returns the one room the client's user is in.
func mustRoom(t *testing.T, cli *mautrix.Client) id.RoomID {
	t.Helper()
	rooms, err := cli.JoinedRooms(t.Context())
	if err != nil || len(rooms.JoinedRooms) != 1 {
		t.Fatalf("%s: joined rooms %v: %v", cli.UserID, rooms, err)
	}
	return rooms.JoinedRooms[0]
}

// appservice is a minimal appservice endpoint that records the
// transactions the homeserver pushes to it.
type appservice struct {
	id           string
	asToken      string
	hsToken      string
	registration string // path of its registration.yaml

	mu      sync.Mutex
	txns    []string              // transaction ids in arrival order
	events  map[id.EventID]string // event → transaction that carried it
	arrived chan struct{}         // closed and replaced on each transaction
}

// startAppservice serves an appservice endpoint and writes its
// registration: namespace @<id>_.*, its own tokens and sender.
func startAppservice(t *testing.T, asID string) *appservice {
	t.Helper()
	as := &appservice{
		id:      asID,
		asToken: asID + "-as-" + randomHex(t),
		hsToken: asID + "-hs-" + randomHex(t),
		events:  map[id.EventID]string{},
		arrived: make(chan struct{}),
	}
	srv := httptest.NewServer(http.HandlerFunc(as.serveHTTP))
	t.Cleanup(srv.Close)
	reg := map[string]any{
		"id":               asID,
		"url":              srv.URL,
		"as_token":         as.asToken,
		"hs_token":         as.hsToken,
		"sender_localpart": asID + "_bot",
		"rate_limited":     false,
		"namespaces": map[string]any{
			"users":   []any{map[string]any{"regex": "@" + asID + "_.*", "exclusive": true}},
			"rooms":   []any{},
			"aliases": []any{},
		},
	}
	data, err := yaml.Marshal(reg)
	if err != nil {
		t.Fatal(err)
	}
	as.registration = filepath.Join(t.TempDir(), asID+".yaml")
	if err := os.WriteFile(as.registration, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return as
}

func randomHex(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

func (as *appservice) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	txnID, ok := strings.CutPrefix(r.URL.Path, "/_matrix/app/v1/transactions/")
	if r.Method != http.MethodPut || !ok {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errcode":"M_UNRECOGNIZED"}`))
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+as.hsToken {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"errcode":"M_FORBIDDEN"}`))
		return
	}
	var body struct {
		Events []struct {
			EventID id.EventID `json:"event_id"`
		} `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"errcode":"M_NOT_JSON"}`))
		return
	}
	as.mu.Lock()
	as.txns = append(as.txns, txnID)
	for _, ev := range body.Events {
		as.events[ev.EventID] = txnID
	}
	close(as.arrived)
	as.arrived = make(chan struct{})
	as.mu.Unlock()
	_, _ = w.Write([]byte(`{}`))
}

// puppet registers a user of the appservice's namespace with its token
// and returns a client that acts as that user.
func (as *appservice) puppet(t *testing.T, hs *Homeserver, localpart string) *mautrix.Client {
	t.Helper()
	cli, err := mautrix.NewClient(hs.URL(), "", as.asToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cli.Register(t.Context(), &mautrix.ReqRegister[any]{
		Username: localpart, Type: mautrix.AuthTypeAppservice, InhibitLogin: true,
	}); err != nil {
		t.Fatalf("%s: register %s: %v", as.id, localpart, err)
	}
	cli.UserID = id.NewUserID(localpart, hs.ServerName())
	cli.SetAppServiceUserID = true
	return cli
}

// waitEvent waits until a transaction carries the event and returns that
// transaction's id and how long the wait took.
func (as *appservice) waitEvent(t *testing.T, ev id.EventID, bound time.Duration) (string, time.Duration) {
	t.Helper()
	began := time.Now()
	timeout := time.After(bound)
	for {
		as.mu.Lock()
		txn, ok := as.events[ev]
		arrived := as.arrived
		as.mu.Unlock()
		if ok {
			return txn, time.Since(began)
		}
		select {
		case <-arrived:
		case <-timeout:
			t.Fatalf("%s: event %s not received within %v", as.id, ev, bound)
		}
	}
}

func (as *appservice) saw(ev id.EventID) bool {
	as.mu.Lock()
	defer as.mu.Unlock()
	_, ok := as.events[ev]
	return ok
}

func (as *appservice) txnIDs() []string {
	as.mu.Lock()
	defer as.mu.Unlock()
	return slices.Clone(as.txns)
}
