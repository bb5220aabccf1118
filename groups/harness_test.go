package groups

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/appservice"
	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/internal/testdb"
	"github.com/mls-appservice/mls-appservice/keys"
	"github.com/mls-appservice/mls-appservice/matrix"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
	"github.com/mls-appservice/mls-appservice/seal"
)

// The harness runs one Service over a real PostgreSQL database
// (internal/testdb) behind the real spine of package appservice: what a
// homeserver would send is stored as an appservice transaction, split
// into work items by the Splitter and applied by a Worker with the
// Recorder's and the Service's handlers, in one database transaction per
// batch, exactly as the running service does.
//
// The other side of the room is a remote user's device (@bob on another
// server) whose MLS state the test holds as an epochs.Member: its
// commits, Welcomes and messages are real MLS made by packages epochs and
// mls/group, in the wire format the package's emitters use.
//
// What is not real: there is no homeserver behind matrix.Puppets (its
// address refuses connections), so the calls the Service makes to one
// fail and are logged: seeding a room's membership from its state when a
// puppet joins, and fetching commit events to learn history after a
// Welcome. Neither changes what these tests check. The remote user's MLS
// device list, which /keys/query would give, is written into the
// Service's own cache of device lists (user_mls_devices) by seedDevices.
// Nothing here claims KeyPackages: the remote device adds ours, with the
// KeyPackages our keys.Manager made and queued for upload.

const (
	testDomain   = "ours.test"
	remoteDomain = "remote.test"
	testPrefix   = "_mls_"
)

var testSuite = suite.X25519AES128GCMSHA256Ed25519

type harness struct {
	t        testing.TB
	ctx      context.Context
	db       *database.DB
	sealer   *seal.Sealer
	keys     *keys.Manager
	puppets  *matrix.Puppets
	s        *Service
	metrics  *Metrics
	spine    *appservice.Metrics
	splitter *appservice.Splitter
	worker   *appservice.Worker
	logs     *logBuffer
	// skew is added to the Service's clock (advance).
	skew   atomic.Int64
	txn    atomic.Int64
	events atomic.Int64
	// given holds the KeyPackages keyPackage returned, so that a device
	// added to a second room gets another.
	given map[string]bool
}

type harnessOptions struct {
	Policy   epochs.Policy
	MaxConns int32
	// NoStateCache turns the Service's state cache off (it has the
	// service's default budget otherwise, so that every test runs through
	// it).
	NoStateCache bool
	// Quiet drops the Service's log; else it is kept in harness.logs
	// (warnings and above) and printed if the test fails.
	Quiet bool
	// OffloadThreshold is the Service's; 0 offloads every commit and
	// Welcome, so that every test runs through the media path.
	OffloadThreshold int64
	// MaxAttempts is the worker's (1: an item that fails once is parked).
	MaxAttempts int
}

// logBuffer keeps a test's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	if o.MaxConns == 0 {
		o.MaxConns = 4
	}
	return harnessOver(t, testdb.Open(t, o.MaxConns), newSealer(t), o)
}

// newSealer returns a Sealer with a new key.
func newSealer(t testing.TB) *seal.Sealer {
	t.Helper()
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := seal.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return sealer
}

// restart returns a harness with a new Service (and spine) over the same
// database and seal key, as after the process was killed: nothing is
// carried over but what PostgreSQL holds.
func (h *harness) restart(o harnessOptions) *harness {
	h.t.Helper()
	n := harnessOver(h.t, h.db, h.sealer, o)
	n.txn.Store(h.txn.Load() + 1000)
	n.given = h.given
	n.events.Store(h.events.Load() + 1000)
	return n
}

func harnessOver(t testing.TB, db *database.DB, sealer *seal.Sealer, o harnessOptions) *harness {
	t.Helper()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	logs := &logBuffer{}
	log := zerolog.Nop()
	if !o.Quiet {
		log = zerolog.New(logs).Level(zerolog.WarnLevel)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("log:\n%s", logs)
			}
		})
	}
	puppets := matrix.NewPuppets(matrix.PuppetsConfig{HomeserverURL: "http://127.0.0.1:9", Domain: testDomain,
		ASToken: "unused", BotLocalpart: "mlsbot", UserPrefix: testPrefix, DB: db, Log: log})
	km, err := keys.New(keys.Config{DB: db, Sealer: sealer, Homeserver: puppets, Metrics: keys.NewMetrics(reg), Log: log,
		Suite: testSuite, Stock: 3, LowWater: 1, CheckInterval: time.Hour, Lifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	metrics := NewMetrics(reg)
	stateCache := 64 << 20
	if o.NoStateCache {
		stateCache = 0
	}
	var skew *atomic.Int64
	s, err := New(Config{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }, DB: db, Sealer: sealer, Keys: km, Puppets: puppets, Metrics: metrics, Log: log, Domain: testDomain,
		Grace: time.Second, MaxJitter: time.Millisecond, Policy: o.Policy, Wait: time.Minute, Autojoin: AutojoinOff, StateCache: stateCache,
		SendTimeout: 20 * time.Millisecond, DeviceTTL: time.Hour, OffloadThreshold: o.OffloadThreshold})
	if err != nil {
		t.Fatal(err)
	}
	handlers := appservice.Recorder{}.Handlers()
	s.Handlers(&handlers)
	asMetrics := appservice.NewMetrics(reg)
	h := &harness{t: t, ctx: ctx, db: db, logs: logs, sealer: sealer, keys: km, puppets: puppets, s: s, metrics: metrics, spine: asMetrics,
		splitter: appservice.NewSplitter(db, asMetrics, 1, log),
		worker: appservice.NewWorker(appservice.WorkerConfig{DB: db, Handlers: handlers, Metrics: asMetrics, Log: log,
			BatchSize: 8, MaxAttempts: max(o.MaxAttempts, 1), RetryBackoff: time.Millisecond, MaxRetryBackoff: time.Millisecond, ItemTimeout: time.Minute})}
	skew = &h.skew
	return h
}

// advance moves the Service's clock forward.
func (h *harness) advance(d time.Duration) { h.skew.Add(int64(d)) }

// puppet makes one of our puppets with devices, each with its MLS
// identity and KeyPackages (keys.Manager.EnsureIdentity, as AddDevice
// does after the homeserver made the device).
func (h *harness) puppet(name string, devices ...string) id.UserID {
	h.t.Helper()
	user := h.puppets.PuppetID(name)
	err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
		if err := database.SavePuppet(h.ctx, tx, string(user)); err != nil {
			return err
		}
		out := database.NewProducer(tx)
		for _, d := range devices {
			if err := database.SavePuppetDevice(h.ctx, tx, string(user), d, name); err != nil {
				return err
			}
			if _, err := h.keys.EnsureIdentity(h.ctx, tx, out, keys.Device{UserID: user, DeviceID: id.DeviceID(d)}); err != nil {
				return err
			}
		}
		return out.Flush(h.ctx)
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return user
}

// keyPackage returns one of the KeyPackages of our device that its
// queued /keys/upload publishes (what a claim would return), each once.
func (h *harness) keyPackage(d epochs.Device) *message.KeyPackage {
	h.t.Helper()
	var content []byte
	if err := h.db.QueryRow(h.ctx, `SELECT content FROM outbox WHERE kind = 'key_upload' AND user_id = $1 AND device_id = $2
		ORDER BY seq LIMIT 1`, d.UserID, d.DeviceID).Scan(&content); err != nil {
		h.t.Fatalf("upload of %s: %v", d, err)
	}
	var body struct {
		OneTimeKeys map[string]string `json:"one_time_keys"`
	}
	if err := json.Unmarshal(content, &body); err != nil {
		h.t.Fatal(err)
	}
	if h.given == nil {
		h.given = map[string]bool{}
	}
	for _, k := range slices.Sorted(maps.Keys(body.OneTimeKeys)) {
		v := body.OneTimeKeys[k]
		if h.given[v] {
			continue
		}
		h.given[v] = true
		data, err := base64.RawStdEncoding.DecodeString(v)
		if err != nil {
			h.t.Fatal(err)
		}
		msg, err := message.ParseMLSMessage(data)
		if err != nil || msg.KeyPackage == nil {
			h.t.Fatalf("KeyPackage of %s: %v", d, err)
		}
		return msg.KeyPackage
	}
	h.t.Fatalf("no KeyPackage uploaded for %s", d)
	return nil
}

// seedDevices writes user's MLS devices into the Service's device-list
// cache, as /keys/query would have answered.
func (h *harness) seedDevices(user string, devices ...string) {
	h.t.Helper()
	if _, err := h.db.Exec(h.ctx, `INSERT INTO user_mls_devices (user_id, devices, fetched_at) VALUES ($1, $2, now())
		ON CONFLICT (user_id) DO UPDATE SET devices = excluded.devices, fetched_at = excluded.fetched_at`, user, devices); err != nil {
		h.t.Fatal(err)
	}
}

// event builds a room event as the homeserver sends it.
func (h *harness) event(room id.RoomID, sender, typ string, stateKey *string, content any) (json.RawMessage, id.EventID) {
	h.t.Helper()
	eid := id.EventID(fmt.Sprintf("$ev%d:%s", h.events.Add(1), remoteDomain))
	ev := map[string]any{"type": typ, "room_id": room, "event_id": eid, "sender": sender,
		"origin_server_ts": time.Now().UnixMilli(), "content": content}
	if stateKey != nil {
		ev["state_key"] = *stateKey
	}
	return mustJSON(h.t, ev), eid
}

func (h *harness) member(room id.RoomID, sender, target, membership string) (json.RawMessage, id.EventID) {
	return h.event(room, sender, "m.room.member", &target, map[string]string{"membership": membership})
}

func toDevice(sender string, to epochs.Device, content any) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"type": EncryptedType, "sender": sender, "to_user_id": to.UserID,
		"to_device_id": to.DeviceID, "content": content})
	return b
}

// send stores one appservice transaction and applies everything it
// causes, like the running service; it fails the test if an item was
// parked (a handler error).
func (h *harness) send(events []json.RawMessage, toDevices []json.RawMessage) {
	h.t.Helper()
	h.save(events, toDevices)
	h.drain()
}

// save stores a transaction of events and to-device messages without
// processing it.
func (h *harness) save(events []json.RawMessage, toDevices []json.RawMessage) {
	h.t.Helper()
	body := map[string]any{}
	if len(events) > 0 {
		body["events"] = events
	}
	if len(toDevices) > 0 {
		body["to_device"] = toDevices
	}
	if _, _, _, err := database.SaveTransaction(h.ctx, h.db, fmt.Sprintf("txn%d", h.txn.Add(1)), mustJSON(h.t, body)); err != nil {
		h.t.Fatal(err)
	}
}

// drain runs the spine until no work is left; an item it parks fails the
// test.
func (h *harness) drain() {
	h.t.Helper()
	parked := h.drainParking()
	for _, it := range parked {
		h.t.Errorf("item %s of %s parked: %s", it.Kind, it.Queue, it.LastError)
	}
	if len(parked) > 0 {
		h.t.FailNow()
	}
}

// drainParking runs the spine until no work is left and returns the items
// parked, for tests of what a failure stops.
func (h *harness) drainParking() []database.Item {
	h.t.Helper()
	for {
		split, err := h.splitter.Step(h.ctx)
		if err != nil {
			h.t.Fatal(err)
		}
		worked, err := h.worker.Step(h.ctx)
		if err != nil {
			h.t.Fatal(err)
		}
		if !split && !worked {
			break
		}
	}
	parked, err := database.ParkedItems(h.ctx, h.db)
	if err != nil {
		h.t.Fatal(err)
	}
	return parked
}

func counter(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// inWork runs f in one transaction as the spine runs a handler: with a
// Work over it, whose queued events are flushed before the commit and
// whose AfterCommit functions (notifications, counters) run after it.
func (h *harness) inWork(f func(w *inbound.Work) error) {
	h.t.Helper()
	var work *inbound.Work
	err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
		work = &inbound.Work{Q: tx, Out: database.NewProducer(tx)}
		if err := f(work); err != nil {
			return err
		}
		return work.Out.Flush(h.ctx)
	})
	if err != nil {
		h.t.Fatal(err)
	}
	work.Committed()
}

// remote is a device of another server's user in the room: its MLS
// state, made and driven by package epochs.
type remote struct {
	h     *harness
	dev   epochs.Device
	m     *epochs.Member
	room  id.RoomID
	alg   string
	welAl string
}

// newRemoteRoom has a remote user create a DMLS room: the create event
// and its join are applied by the Service, and the remote device holds
// epoch 0.
func (h *harness) newRemoteRoom(name string) *remote {
	h.t.Helper()
	s, err := suite.Lookup(testSuite)
	if err != nil {
		h.t.Fatal(err)
	}
	sig, err := s.GenerateSignatureKey()
	if err != nil {
		h.t.Fatal(err)
	}
	dev := epochs.Device{UserID: "@" + name + ":" + remoteDomain, DeviceID: strings.ToUpper(name) + "DEV"}
	kp, err := group.NewKeyPackage(message.BasicCredential([]byte(dev.Identity())), sig, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	room := id.RoomID(fmt.Sprintf("!room%d:%s", h.events.Add(1), remoteDomain))
	g, err := group.Create(kp, []byte(room), nil, h.s.groupConfig())
	if err != nil {
		h.t.Fatal(err)
	}
	return h.remoteRoom(room, dev, g)
}

// remoteRoom has the remote device dev, which holds g, create room.
func (h *harness) remoteRoom(room id.RoomID, dev epochs.Device, g *group.Group) *remote {
	h.t.Helper()
	r := &remote{h: h, dev: dev, room: room, alg: keys.Algorithm(testSuite)}
	r.welAl = welcomePrefix + r.alg[len(algorithmPrefix):]
	create, createID := h.event(r.room, r.dev.UserID, "m.room.create", new(string),
		map[string]any{"encryption": map[string]string{"algorithm": r.alg}})
	var err error
	if r.m, err = epochs.NewMember(r.dev, g, string(createID), epochs.Policy{}, time.Now()); err != nil {
		h.t.Fatal(err)
	}
	join, _ := h.member(r.room, r.dev.UserID, r.dev.UserID, "join")
	h.send([]json.RawMessage{create, join}, nil)
	return r
}

// view is the room as the remote device sees it: users and their devices.
func view(devs ...epochs.Device) epochs.Room {
	v := epochs.Room{Members: map[string]epochs.MemberState{}, Devices: map[string][]string{}}
	for _, d := range devs {
		v.Members[d.UserID] = epochs.Join
		v.Devices[d.UserID] = append(v.Devices[d.UserID], d.DeviceID)
	}
	return v
}

// commit has the remote device commit towards room, with KeyPackages
// from kps, and records its event id; it returns the commit's event and
// Welcome contents as sendCommit would make them.
func (r *remote) commit(room epochs.Room, kps map[epochs.Device]*message.KeyPackage) (*epochs.Outgoing, json.RawMessage, id.EventID, any) {
	r.h.t.Helper()
	out, err := r.m.Commit(r.dev, room, func(d epochs.Device) *message.KeyPackage { return kps[d] }, time.Now())
	if err != nil {
		r.h.t.Fatal(err)
	}
	ev, eid, wel := r.wire(out)
	if err := r.m.SetCommitEvent(out.Commit.Epoch, string(eid)); err != nil {
		r.h.t.Fatal(err)
	}
	return out, ev, eid, wel
}

// wire encodes a commit of the remote device as its room event and
// Welcome content.
func (r *remote) wire(out *epochs.Outgoing) (json.RawMessage, id.EventID, any) {
	c := out.Commit
	base, ok := r.m.Graph().Node(c.Base)
	if !ok {
		r.h.t.Fatalf("base %v of the remote's commit is not in its graph", c.Base)
	}
	creator := base.Creator
	content := wireEncrypted{Algorithm: r.alg, Ciphertext: b64(c.Message), EpochCreator: (*deviceJSON)(&creator),
		CommitEvent: base.CommitEvent, Epoch: (*b64ID)(&c.Base), Sender: (*deviceJSON)(&c.Creator), Next: (*b64ID)(&c.Epoch),
		NextNumber: &c.Number}
	for _, h := range c.Resolves {
		n, _ := r.m.Graph().Node(h)
		content.Resolves = append(content.Resolves, epochs.ResolvesPair{Number: n.Number, Creator: n.Creator})
		content.DMLSResolves = append(content.DMLSResolves, b64ID(h))
	}
	ev, eid := r.h.event(r.room, r.dev.UserID, EncryptedType, nil, content)
	var wel any
	if out.Welcome != nil {
		wel = wireWelcome{Algorithm: r.welAl, Ciphertext: b64(out.Welcome), RoomID: string(r.room), Sender: (*deviceJSON)(&c.Creator),
			CommitEvent: string(eid), Base: (*b64ID)(&c.Base), Epoch: (*b64ID)(&c.Epoch), Number: &c.Number,
			Resolves:     append([]epochs.ResolvesPair{{Number: base.Number, Creator: base.Creator}}, content.Resolves...),
			DMLSResolves: content.DMLSResolves}
	}
	return ev, eid, wel
}

// message encrypts an application message of the remote device in its
// base epoch, as an m.room.encrypted event.
func (r *remote) message(typ string, content any) (json.RawMessage, id.EventID) {
	r.h.t.Helper()
	plain := mustJSON(r.h.t, map[string]any{"type": typ, "content": content, "room_id": r.room})
	epoch, ct, err := r.m.Encrypt(r.dev, plain)
	if err != nil {
		r.h.t.Fatal(err)
	}
	return r.encrypted(epoch, ct)
}

// encrypted is the m.room.encrypted event of an application message the
// remote device encrypted in epoch.
func (r *remote) encrypted(epoch epochs.ID, ct []byte) (json.RawMessage, id.EventID) {
	n, _ := r.m.Graph().Node(epoch)
	creator := n.Creator
	return r.h.event(r.room, r.dev.UserID, EncryptedType, nil, wireEncrypted{Algorithm: r.alg, Ciphertext: b64(ct),
		EpochCreator: (*deviceJSON)(&creator), CommitEvent: n.CommitEvent, Epoch: (*b64ID)(&epoch)})
}

// remoteMember has a user of the remote homeserver join the room with
// one device that the remote group can add (seeded in the device lists,
// its KeyPackage returned) but that never sends: a member whose moving
// on nothing ever shows.
func (r *remote) remoteMember(name string) (epochs.Device, *message.KeyPackage) {
	r.h.t.Helper()
	d := epochs.Device{UserID: "@" + name + ":" + remoteDomain, DeviceID: strings.ToUpper(name) + "DEV"}
	inv, _ := r.h.member(r.room, r.dev.UserID, d.UserID, "invite")
	join, _ := r.h.member(r.room, d.UserID, d.UserID, "join")
	r.h.send([]json.RawMessage{inv, join}, nil)
	r.h.seedDevices(d.UserID, d.DeviceID)
	return d, newKeyPackage(r.h.t, d)
}

// joinOurs has the remote device add our devices (whose users join the
// room first) and sends the commit and its Welcomes to our service. It
// returns the commit's epoch.
func (r *remote) joinOurs(ours ...epochs.Device) epochs.ID {
	r.h.t.Helper()
	var events []json.RawMessage
	seen := map[string]bool{}
	for _, d := range ours {
		if !seen[d.UserID] {
			seen[d.UserID] = true
			inv, _ := r.h.member(r.room, r.dev.UserID, d.UserID, "invite")
			join, _ := r.h.member(r.room, d.UserID, d.UserID, "join")
			events = append(events, inv, join)
		}
	}
	r.h.send(events, nil)
	r.h.seedDevices(r.dev.UserID, r.dev.DeviceID)
	kps := map[epochs.Device]*message.KeyPackage{}
	for _, d := range ours {
		kps[d] = r.h.keyPackage(d)
	}
	out, ev, _, wel := r.commit(view(append([]epochs.Device{r.dev}, ours...)...), kps)
	var tds []json.RawMessage
	for _, d := range out.Added {
		tds = append(tds, toDevice(r.dev.UserID, d, wel))
	}
	r.h.send([]json.RawMessage{ev}, tds)
	return out.Commit.Epoch
}
