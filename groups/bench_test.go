package groups

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
	"github.com/mls-appservice/mls-appservice/mls/group/grouptest"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// Benchmarks of issue 11, with the real PostgreSQL of ./scripts/with-env
// (skipped without it), through the real spine (see harness_test.go):
//
//	./scripts/with-env go test -run '^$' -bench . -benchtime 20x -count 5 ./groups/
//
// A 1,000-member room (GROUPS_BENCH_MEMBERS sets another size) with a
// full tree is built by grouptest (its
// members are remote users @r<i>:remote.test, device D<i>, all joined in
// the room, with their device lists in the Service's cache); the remote
// member at leaf 0 adds our devices by a real commit and Welcomes.

var benchMembers = func() int {
	if n, err := strconv.Atoi(os.Getenv("GROUPS_BENCH_MEMBERS")); err == nil && n > 1 {
		return n
	}
	return 1000
}()

func requirePostgres(b *testing.B) {
	if os.Getenv(testenv.PostgresVar) == "" {
		b.Skipf("%s is not set: run with ./scripts/with-env", testenv.PostgresVar)
	}
}

func remoteMember(i int) epochs.Device {
	return epochs.Device{UserID: fmt.Sprintf("@r%d:%s", i, remoteDomain), DeviceID: fmt.Sprintf("D%d", i)}
}

// joinRemotes sends the joins of remote members from..to-1 and seeds
// their device lists.
func (h *harness) joinRemotes(room id.RoomID, from, to int) {
	h.t.Helper()
	const batch = 250
	for lo := from; lo < to; lo += batch {
		var events []json.RawMessage
		for i := lo; i < min(lo+batch, to); i++ {
			d := remoteMember(i)
			ev, _ := h.member(room, d.UserID, d.UserID, "join")
			events = append(events, ev)
		}
		h.send(events, nil)
	}
	if _, err := h.db.Exec(h.ctx, `INSERT INTO user_mls_devices (user_id, devices, fetched_at)
		SELECT '@r' || i || ':`+remoteDomain+`', ARRAY['D' || i], now() FROM generate_series($1::int, $2::int - 1) i
		ON CONFLICT (user_id) DO UPDATE SET devices = excluded.devices, fetched_at = now()`, from, to); err != nil {
		h.t.Fatal(err)
	}
}

// bigRemoteRoom is a 1,000-member room: remote members and `ours` of our
// puppets' devices (one device each), which joined by Welcome.
func bigRemoteRoom(b *testing.B, ours int, stateCache bool) (*harness, *remote, []id.UserID, epochs.Room) {
	return remoteRoomOf(b, benchMembers, ours, stateCache)
}

// remoteRoomOf is bigRemoteRoom with the given number of members.
func remoteRoomOf(b *testing.B, members, ours int, stateCache bool) (*harness, *remote, []id.UserID, epochs.Room) {
	requirePostgres(b)
	h := newHarness(b, harnessOptions{Quiet: os.Getenv("GROUPS_BENCH_LOG") == "", Policy: epochs.Policy{MaxEpochs: 3},
		NoStateCache: !stateCache})
	n := members - ours
	g, err := grouptest.BuildWith(testSuite, n, true, grouptest.Options{Scheme: keyschedule.SchemeDMLS,
		Name: func(i int) string { return remoteMember(i).Identity() }})
	if err != nil {
		b.Fatal(err)
	}
	bobG, err := g.Member(0, h.s.groupConfig())
	if err != nil {
		b.Fatal(err)
	}
	bob := h.remoteRoom(id.RoomID(fmt.Sprintf("!big%d:%s", ours, remoteDomain)), remoteMember(0), bobG)
	h.joinRemotes(bob.room, 1, n)
	h.joinRemotes(bob.room, 0, 1) // bob's device list too
	var puppets []id.UserID
	var devs []epochs.Device
	var events []json.RawMessage
	for i := range ours {
		p := h.puppet(fmt.Sprintf("p%d", i), "DEV")
		puppets, devs = append(puppets, p), append(devs, epochs.Device{UserID: string(p), DeviceID: "DEV"})
		inv, _ := h.member(bob.room, bob.dev.UserID, string(p), "invite")
		join, _ := h.member(bob.room, string(p), string(p), "join")
		events = append(events, inv, join)
	}
	h.send(events, nil)
	room := epochs.Room{Members: map[string]epochs.MemberState{}, Devices: map[string][]string{}}
	for i := range n {
		d := remoteMember(i)
		room.Members[d.UserID], room.Devices[d.UserID] = epochs.Join, []string{d.DeviceID}
	}
	kps := map[epochs.Device]*message.KeyPackage{}
	for _, d := range devs {
		room.Members[d.UserID], room.Devices[d.UserID] = epochs.Join, []string{d.DeviceID}
		kps[d] = h.keyPackage(d)
	}
	out, ev, eid, _ := bob.commit(room, kps)
	if len(out.Added) != ours || len(out.Removed) != 0 {
		b.Fatalf("bob's commit added %d, removed %d", len(out.Added), len(out.Removed))
	}
	// The commit event goes through the spine (it waits: we hold no
	// epoch yet). The Welcome cannot: with the ratchet tree of 1,000
	// members inline it is about 365 KB of base64, and ParseWelcome
	// refuses more than maxCiphertext (96 KiB) (see
	// TestWelcomeOfLargeRoom). It is given to the Service's Welcome
	// handling as parsed, in one work item per device.
	h.send([]json.RawMessage{ev}, nil)
	c := out.Commit
	c.EventID = string(eid)
	joinStart := time.Now()
	var firstJoin time.Duration
	for i, d := range out.Added {
		if i == 1 {
			firstJoin = time.Since(joinStart)
		}
		h.inWork(func(w *inbound.Work) error {
			return h.s.welcome(h.ctx, w, &Welcome{Algorithm: bob.welAl, Message: out.Welcome, RoomID: string(bob.room), Commit: c},
				toKeys(d), id.UserID(bob.dev.UserID))
		})
	}
	h.drain()
	if got := counter(h.metrics.WelcomesJoined); got != float64(ours) {
		b.Fatalf("%v of our devices joined, want %d", got, ours)
	}
	// The first device joins the epoch in full (the tree's validation);
	// the others derive only their private parts from it.
	b.Logf("%d of our devices joined a %d-member room by Welcome in %v (the first in %v)", ours, members,
		time.Since(joinStart).Round(time.Millisecond), firstJoin.Round(time.Millisecond))
	r := h.loadRoom(bob.room)
	base, holders, err := r.base()
	if err != nil || len(holders) != ours || len(r.m.Devices(base)) != members {
		b.Fatalf("base %v holders %d devices %d (%v)", base, len(holders), len(r.m.Devices(base)), err)
	}
	return h, bob, puppets, room
}

// store stores a transaction of events and splits it (not timed).
func (h *harness) store(events ...json.RawMessage) {
	h.t.Helper()
	h.save(events, nil)
	if _, err := h.splitter.Step(h.ctx); err != nil {
		h.t.Fatal(err)
	}
}

// BenchmarkApplyCommit: our service applies a remote member's commit (an
// update with a path) in a 1,000-member room where it holds 1 or 10
// devices: the whole work item, from the stored event to the committed
// transaction (load, process once, derive each device's private part,
// save, deliver the mls_state entry, reconcile).
func BenchmarkApplyCommit(b *testing.B) {
	for _, ours := range []int{1, 10} {
		b.Run(fmt.Sprintf("members=%d/ours=%d", benchMembers, ours), func(b *testing.B) {
			h, bob, _, room := bigRemoteRoom(b, ours, true)
			applied := counter(h.metrics.CommitsApplied)
			for b.Loop() {
				b.StopTimer()
				_, ev, _, _ := bob.commit(room, nil)
				h.store(ev)
				b.StartTimer()
				h.drain()
			}
			b.StopTimer()
			if got := counter(h.metrics.CommitsApplied) - applied; got != float64(b.N) {
				b.Fatalf("%v commits applied in %d iterations", got, b.N)
			}
		})
	}
}

// BenchmarkDecryptDeliver: a remote member's message decrypted once and
// delivered to each of our puppets (1 or 10) in the 1,000-member room,
// with the state cache (statecache.go) off and on.
func BenchmarkDecryptDeliver(b *testing.B) {
	for _, ours := range []int{1, 10} {
		for _, cache := range []bool{false, true} {
			b.Run(fmt.Sprintf("members=%d/puppets=%d/state_cache=%v", benchMembers, ours, cache), func(b *testing.B) {
				h, bob, _, _ := bigRemoteRoom(b, ours, cache)
				decrypted := counter(h.metrics.MessagesDecrypt)
				delivered := counter(h.metrics.Delivered.WithLabelValues(string(KindMessage)))
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					ev, _ := bob.message("m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d", i)})
					h.store(ev)
					b.StartTimer()
					h.drain()
				}
				b.StopTimer()
				if got := counter(h.metrics.MessagesDecrypt) - decrypted; got != float64(b.N) {
					b.Fatalf("%v decrypted in %d iterations", got, b.N)
				}
				if got := counter(h.metrics.Delivered.WithLabelValues(string(KindMessage))) - delivered; got != float64(b.N*ours) {
					b.Fatalf("%v deliveries in %d iterations to %d puppets", got, b.N, ours)
				}
				if cache && h.s.statics.len() == 0 {
					b.Fatal("the state cache kept nothing")
				}
			})
		}
	}
}

// BenchmarkDecryptRun: a transaction of run messages, which the worker
// applies as one run (run.go), in a 10-member room (the load test's) with
// its state cached, delivered to 1 or 9 puppets of ours; per message.
// Runs of 4 to 128 show a run's fixed cost: the load command's intake
// mode makes runs of about 12 messages at 1,000 rooms, 40 at 200.
func BenchmarkDecryptRun(b *testing.B) {
	for _, c := range []struct{ run, ours int }{{32, 1}, {32, 9}, {12, 9}, {4, 9}, {128, 9}, {1, 9}} {
		run, ours := c.run, c.ours
		b.Run(fmt.Sprintf("run=%d/puppets=%d", run, ours), func(b *testing.B) {
			h, bob, _, _ := remoteRoomOf(b, 10, ours, true)
			applied := counter(h.spine.RunEvents.WithLabelValues("applied"))
			delivered := counter(h.metrics.Delivered.WithLabelValues(string(KindMessage)))
			var spent, cpu time.Duration
			logBytes := h.logBytes()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				evs := make([]json.RawMessage, run)
				for j := range evs {
					evs[j], _ = bob.message("m.room.message", map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("message %d.%d", i, j)})
				}
				h.store(evs...)
				b.StartTimer()
				start, startCPU := time.Now(), processCPU(b)
				h.drain()
				spent, cpu = spent+time.Since(start), cpu+processCPU(b)-startCPU
			}
			b.StopTimer()
			// A lone message is not a run: it is applied on its own.
			if got := counter(h.spine.RunEvents.WithLabelValues("applied")) - applied; run > 1 && got != float64(b.N*run) {
				b.Fatalf("%v messages applied in runs in %d iterations of %d", got, b.N, run)
			}
			if got := counter(h.metrics.Delivered.WithLabelValues(string(KindMessage))) - delivered; got != float64(b.N*run*ours) {
				b.Fatalf("%v deliveries in %d iterations of %d to %d puppets", got, b.N, run, ours)
			}
			b.ReportMetric(float64(spent.Microseconds())/float64(b.N*run), "µs/message")
			// The service's own CPU, without PostgreSQL's.
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*run), "cpu-µs/message")
			// What the messages added to the rooms' and puppets' logs on
			// disk, indexes included (by pages: run enough of them).
			b.ReportMetric(float64(h.logBytes()-logBytes)/float64(b.N*run), "log-B/message")
			// The same compacted: a span that grew left a dead version of
			// itself per message, which VACUUM makes room of.
			h.exec(`VACUUM FULL room_entry`)
			h.exec(`VACUUM FULL delivery_span`)
			b.ReportMetric(float64(h.logBytes())/float64(b.N*run), "live-log-B/message")
		})
	}
}

// logBytes is the size of the room logs and the puppets' spans.
func (h *harness) logBytes() int64 {
	h.t.Helper()
	var n int64
	if err := h.db.QueryRow(h.ctx, `SELECT pg_total_relation_size('room_entry') + pg_total_relation_size('delivery_span')`).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// processCPU is the CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStoredBytes reports, from the rows PostgreSQL holds for the
// base epoch of a 1,000-member room with 10 of our devices, the shared
// state's bytes per member and the private part's bytes per device (as
// stored: sealed), and the graph metadata's size. One iteration: the
// figures do not depend on b.N.
func BenchmarkStoredBytes(b *testing.B) {
	const ours = 10
	h, bob, _, room := bigRemoteRoom(b, ours, true)
	// One more commit, so that the measured epoch was made by applying a
	// commit (not by the Welcome).
	_, ev, _, _ := bob.commit(room, nil)
	h.send([]json.RawMessage{ev}, nil)
	r := h.loadRoom(bob.room)
	base, _, err := r.base()
	if err != nil {
		b.Fatal(err)
	}
	var shared, static, init, secrets, graph int64
	var privates []int64
	if err := h.db.QueryRow(h.ctx, `SELECT octet_length(static), octet_length(init), octet_length(secrets),
		(SELECT octet_length(graph) FROM dmls_room WHERE room_id = $1) FROM dmls_epoch WHERE room_id = $1 AND epoch_id = $2`,
		bob.room, []byte(base)).Scan(&static, &init, &secrets, &graph); err != nil {
		b.Fatal(err)
	}
	shared = static + init + secrets
	rows, err := h.db.Query(h.ctx, `SELECT octet_length(private) FROM `+privatePartRows+` p WHERE room_id = $1 AND epoch_id = $2`,
		bob.room, []byte(base))
	if err != nil {
		b.Fatal(err)
	}
	if privates, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil || len(privates) != ours {
		b.Fatalf("%d private parts (%v)", len(privates), err)
	}
	var sum int64
	for _, p := range privates {
		sum += p
	}
	for b.Loop() {
	}
	b.ReportMetric(float64(shared)/float64(benchMembers), "shared_B/member")
	b.ReportMetric(float64(static)/float64(benchMembers), "static_B/member")
	b.ReportMetric(float64(init), "init_B")
	b.ReportMetric(float64(secrets), "secrets_B")
	b.ReportMetric(float64(sum)/ours, "private_B/device")
	b.ReportMetric(float64(graph), "graph_B")
}

// BenchmarkMembershipToCommit: in a 1,000-member room where our device
// has the lowest leaf (so the committer rule has it commit at once), a
// remote member leaves; timed from the transaction holding the leave
// being stored to the work item that wrote our commit to the outbox
// being committed: splitting, the Recorder, the committer rule, the
// commit (path over 1,000 leaves) and saving the room.
func BenchmarkMembershipToCommit(b *testing.B) {
	requirePostgres(b)
	h := newHarness(b, harnessOptions{Quiet: true, Policy: epochs.Policy{MaxEpochs: 3}})
	p := h.puppet("p0", "DEV")
	ours := epochs.Device{UserID: string(p), DeviceID: "DEV"}
	g, err := grouptest.BuildWith(testSuite, benchMembers, true, grouptest.Options{Scheme: keyschedule.SchemeDMLS,
		Name: func(i int) string {
			if i == 0 {
				return ours.Identity()
			}
			return remoteMember(i).Identity()
		}})
	if err != nil {
		b.Fatal(err)
	}
	roomID := id.RoomID("!commit:" + remoteDomain)
	createID := id.EventID("$create:" + remoteDomain)
	// The room as recorded: created, every member joined (while the room
	// is pending, nothing reconciles), then our device's group is stored
	// as its first epoch, and the room is active.
	if err := h.s.recordRoom(h.ctx, h.db, roomID, string(createID), id.UserID(remoteMember(1).UserID)); err != nil {
		b.Fatal(err)
	}
	h.joinRemotes(roomID, 1, benchMembers)
	join, _ := h.member(roomID, string(p), string(p), "join")
	h.send([]json.RawMessage{join}, nil)
	gm, err := g.Member(0, h.s.groupConfig())
	if err != nil {
		b.Fatal(err)
	}
	m, err := epochs.NewMember(ours, gm, string(createID), h.s.cfg.Policy, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	m.Policy = h.s.cfg.Policy
	if err := h.s.saveRoom(h.ctx, &inbound.Work{Q: h.db}, &room{id: roomID, state: "active", m: m}); err != nil {
		b.Fatal(err)
	}
	commits := func() int {
		return h.count(`SELECT count(*) FROM outbox WHERE kind = 'room_event' AND room_id = $1 AND hook = $2`, roomID, HookName)
	}
	before, made := commits(), counter(h.metrics.CommitsMade)
	leaver := benchMembers - 1
	for b.Loop() {
		if leaver < 2 {
			b.Fatal("no members left to leave")
		}
		b.StopTimer()
		d := remoteMember(leaver)
		leave, _ := h.member(roomID, d.UserID, d.UserID, "leave")
		leaver--
		b.StartTimer()
		if _, _, _, err := database.SaveTransaction(h.ctx, h.db, fmt.Sprintf("txn%d", h.txn.Add(1)),
			mustJSON(b, map[string]any{"events": []json.RawMessage{leave}})); err != nil {
			b.Fatal(err)
		}
		h.drain()
	}
	b.StopTimer()
	if got := commits() - before; got != b.N {
		b.Fatalf("%d commits in the outbox after %d leaves", got, b.N)
	}
	if got := counter(h.metrics.CommitsMade) - made; got != float64(b.N) {
		b.Fatalf("%v commits made after %d leaves", got, b.N)
	}
	r := h.loadRoom(roomID)
	base, _ := r.m.Base()
	if got := len(r.m.Devices(base)); got != benchMembers-b.N {
		b.Fatalf("%d devices after %d removals", got, b.N)
	}
}

// BenchmarkDeliverMembership: a membership event given to every puppet of
// ours joined in a room, as the room's events alternate membership and
// messages (a room filling up while it talks); per membership event, with
// the bytes the puppets' and rooms' logs grew by, indexes included, per
// puppet given it.
func BenchmarkDeliverMembership(b *testing.B) {
	requirePostgres(b)
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("puppets=%d", n), func(b *testing.B) {
			h := newHarness(b, harnessOptions{Quiet: true})
			room := id.RoomID("!members:test")
			to := make([]id.UserID, n)
			for i := range to {
				to[i] = id.UserID(fmt.Sprintf("@p%d:test", i))
			}
			var m entryMaker
			h.deliverNow(to, m.next(room, KindMessage)) // every puppet's log begins
			delivered := counter(h.metrics.Delivered.WithLabelValues(string(KindMembership)))
			before := h.allLogBytes()
			var spent time.Duration
			for b.Loop() {
				b.StopTimer()
				d := m.next(room, KindMembership)
				d.Type, d.Content = "m.room.member", json.RawMessage(`{"membership":"join","displayname":"A new member"}`)
				msg := m.next(room, KindMessage)
				b.StartTimer()
				start := time.Now()
				h.deliverNow(to, d)
				spent += time.Since(start)
				b.StopTimer()
				h.deliverNow(to, msg)
				b.StartTimer()
			}
			b.StopTimer()
			if got := counter(h.metrics.Delivered.WithLabelValues(string(KindMembership))) - delivered; got != float64(b.N*n) {
				b.Fatalf("%v membership deliveries in %d iterations to %d puppets", got, b.N, n)
			}
			b.ReportMetric(float64(spent.Microseconds())/float64(b.N), "µs/event")
			b.ReportMetric(float64(h.allLogBytes()-before)/float64(b.N*n), "log-B/event/puppet")
			// The whole logs compacted (the messages between included): a
			// span that grew left a dead version of itself, which VACUUM
			// makes room of.
			for _, t := range []string{"delivery", "room_entry", "delivery_span"} {
				h.exec(`VACUUM FULL ` + t)
			}
			b.ReportMetric(float64(h.allLogBytes())/float64(b.N*n), "live-log-B/event/puppet")
		})
	}
}

// allLogBytes is the size of the puppets' own rows, spans, and the rooms'
// logs.
func (h *harness) allLogBytes() int64 {
	h.t.Helper()
	var n int64
	if err := h.db.QueryRow(h.ctx, `SELECT pg_total_relation_size('delivery') + pg_total_relation_size('room_entry')
		+ pg_total_relation_size('delivery_span')`).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}
