package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/groups"
)

// e2eWorld is the test's model of two services' puppets and rooms: who
// is in which room, which messages each puppet must receive.
type e2eWorld struct {
	t        *testing.T
	services []*testService
	puppets  map[id.UserID]*testService // puppet -> its service
	devices  map[id.UserID][]id.DeviceID
	joined   map[id.RoomID]map[id.UserID]bool
	messages []e2eMessage
	metrics  map[string]float64 // metric totals of processes that were restarted
	restarts int
	removals int
	// missing are the deliveries the last call of delivered did not
	// find, or found more than once, for the failure message.
	missing []string
}

func newE2EWorld(t *testing.T, svcs []*testService) *e2eWorld {
	return &e2eWorld{t: t, services: svcs, puppets: map[id.UserID]*testService{}, devices: map[id.UserID][]id.DeviceID{},
		joined: map[id.RoomID]map[id.UserID]bool{}, metrics: map[string]float64{}}
}

type e2eMessage struct {
	room   id.RoomID
	sender id.UserID
	body   string
	event  id.EventID
	to     []id.UserID // joined when sent, other than the sender
	maybe  []id.UserID // may receive it, at most once (membership in flux)
}

func (w *e2eWorld) puppet(s *testService, name string, devices int) id.UserID {
	w.t.Helper()
	ctx := context.Background()
	var user id.UserID
	for i := range devices {
		dev := id.DeviceID(fmt.Sprintf("%sD%d", strings.ToUpper(name), i+1))
		if i == 0 {
			var err error
			if user, err = s.c.groups.CreatePuppet(ctx, name, name, "", dev); err != nil {
				w.t.Fatalf("create puppet %s: %v", name, err)
			}
		} else if err := s.c.groups.AddDevice(ctx, user, dev, name); err != nil {
			w.t.Fatalf("add device %s: %v", dev, err)
		}
		w.devices[user] = append(w.devices[user], dev)
	}
	w.puppets[user] = s
	return user
}

func (w *e2eWorld) addDevice(user id.UserID) {
	w.t.Helper()
	dev := id.DeviceID(fmt.Sprintf("%sX%d", strings.ToUpper(strings.TrimPrefix(string(user), "@")[:4]), len(w.devices[user])+1))
	if err := w.puppets[user].c.groups.AddDevice(context.Background(), user, dev, "extra"); err != nil {
		w.t.Fatalf("add device %s to %s: %v", dev, user, err)
	}
	w.devices[user] = append(w.devices[user], dev)
}

// expected returns the devices a room's group must hold: every device of
// the users the test made members.
// invitation is one invite of a concurrent round: s's puppet by invites
// to.
type invitation struct {
	s      *testService
	by, to id.UserID
}

// inviteAtOnce sends the invitations concurrently, so that the services'
// commits fork the group, and counts the invitees joined (puppets accept
// their invitations).
func (w *e2eWorld) inviteAtOnce(room id.RoomID, invs ...invitation) {
	w.t.Helper()
	var wg sync.WaitGroup
	for _, inv := range invs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := inv.s.c.groups.Invite(context.Background(), inv.by, room, inv.to); err != nil {
				w.t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, inv := range invs {
		w.joined[room][inv.to] = true
	}
}

func (w *e2eWorld) expected(room id.RoomID) []string {
	var out []string
	for u, in := range w.joined[room] {
		if !in {
			continue
		}
		for _, d := range w.devices[u] {
			out = append(out, string(u)+"|"+string(d))
		}
	}
	sort.Strings(out)
	return out
}

// converged waits until every service with a puppet in the room holds
// the same single head, with the expected devices, and returns the
// authenticators agreed.
func (w *e2eWorld) converged(room id.RoomID, timeout time.Duration) {
	w.t.Helper()
	want := w.expected(room)
	var last string
	defer func() {
		if w.t.Failed() {
			w.t.Logf("last state of %s: %s", room, last)
			for _, s := range w.services {
				info, err := s.c.groups.Room(context.Background(), room)
				b, _ := json.Marshal(info)
				w.t.Logf("%s: %s (%v)", s.name, b, err)
				var waiting int
				_ = s.db.QueryRow(context.Background(), `SELECT count(*) FROM dmls_waiting`).Scan(&waiting)
				w.t.Logf("%s: %d events waiting; running: %v; metrics %v", s.name, waiting, s.running(), scrape(s))
				rows, _ := s.db.Query(context.Background(), `SELECT to_user_id || '|' || to_device_id || coalesce(' and ' || also_to::text, ''), sent_at IS NOT NULL,
					coalesce(last_error, '') FROM outbox WHERE kind = 'to_device' ORDER BY seq`)
				for rows != nil && rows.Next() {
					var to, lastErr string
					var sent bool
					_ = rows.Scan(&to, &sent, &lastErr)
					w.t.Logf("%s: to-device to %s sent %v %s", s.name, to, sent, lastErr)
				}
				rows, _ = s.db.Query(context.Background(), `SELECT to_user_id || '|' || to_device_id, sender, recorded_at
					FROM inbound_event WHERE kind = 'to_device' ORDER BY seq`)
				for rows != nil && rows.Next() {
					var to, sender string
					var at time.Time
					_ = rows.Scan(&to, &sender, &at)
					w.t.Logf("%s: received to-device for %s from %s at %s", s.name, to, sender, at.Format(time.TimeOnly))
				}
				rows, _ = s.db.Query(context.Background(), `SELECT kind || ' ' || key || ' ' || due_at::text || ' attempts ' || attempts || ' ' || coalesce(last_error, '') FROM timer`)
				for rows != nil && rows.Next() {
					var t string
					_ = rows.Scan(&t)
					w.t.Logf("%s: timer %s", s.name, t)
				}
				rows, _ = s.db.Query(context.Background(), `SELECT device || ' since ' || since::text FROM dmls_orphan`)
				for rows != nil && rows.Next() {
					var t string
					_ = rows.Scan(&t)
					w.t.Logf("%s: orphan %s", s.name, t)
				}
				w.t.Logf("%s: now %s", s.name, time.Now().UTC().Format(time.RFC3339))
				graph, _ := s.c.groups.Graph(context.Background(), room)
				for i, e := range graph {
					if i < 12 {
						w.t.Logf("%s:   epoch %d %s parent %s creator %s retained %v head %v devices %d holders %v", s.name, e.Number, e.ID[:8],
							e.Parent[:min(8, len(e.Parent))], e.Creator, e.Retained, e.Head, e.Devices, e.Holders)
					}
				}
			}
		}
	}()
	until(w.t, timeout, "room "+string(room)+" converged on "+strconv.Itoa(len(want))+" devices", func(ctx context.Context) (bool, error) {
		var epoch, auth string
		for _, s := range w.services {
			// A service that is not running cannot converge; say so
			// rather than wait out the timeout.
			if err := s.running(); err != nil {
				return false, err
			}
		}
		for _, s := range w.services {
			if !w.hasMember(s, room) {
				continue
			}
			info, err := s.c.groups.Room(ctx, room)
			if err != nil {
				last = fmt.Sprintf("%s: %v", s.name, err)
				return false, nil
			}
			devs := slices.Clone(info.Devices)
			sort.Strings(devs)
			ours := slices.Clone(info.Ours)
			sort.Strings(ours)
			wantOurs := w.ours(s, want)
			last = fmt.Sprintf("%s: epoch %d heads %d devices %d/%d ours %d/%d", s.name, info.Epoch, len(info.Heads),
				len(devs), len(want), len(ours), len(wantOurs))
			if !info.Converged || !slices.Equal(devs, want) || !slices.Equal(ours, wantOurs) {
				return false, nil
			}
			// Every member is in the group, so none may be reported
			// without MLS (a stale record of a time they had no device).
			for _, u := range info.LeftOut {
				if w.joined[room][id.UserID(u)] {
					last = fmt.Sprintf("%s reports member %s without MLS: %v", s.name, u, info.LeftOut)
					return false, nil
				}
			}
			if epoch == "" {
				epoch, auth = info.EpochID, info.Authenticator
			} else if info.EpochID != epoch || info.Authenticator != auth {
				last = fmt.Sprintf("%s holds epoch %s, another %s", s.name, info.EpochID, epoch)
				return false, nil
			}
		}
		return true, nil
	})
}

// createRoom makes a room of s's puppet creator with invitees, all
// counted members, and waits until they have joined and the group has
// converged.
func (w *e2eWorld) createRoom(s *testService, name string, creator id.UserID, invite ...id.UserID) id.RoomID {
	w.t.Helper()
	room, err := s.c.groups.CreateRoom(context.Background(), creator, "", groups.CreateRoomOptions{Name: name, Invite: invite})
	if err != nil {
		w.t.Fatalf("create room %q: %v", name, err)
	}
	w.joined[room] = map[id.UserID]bool{creator: true}
	for _, u := range invite {
		w.joined[room][u] = true
	}
	w.joinedAll(room, time.Minute)
	w.converged(room, 2*time.Minute)
	return room
}

// joinedAll waits until every puppet the test counts as a member of room
// has joined it in its own service's view: the group holds invited
// users' devices too, but messages are delivered to joined puppets only,
// and a service accepts its puppets' invitations one after another.
func (w *e2eWorld) joinedAll(room id.RoomID, timeout time.Duration) {
	w.t.Helper()
	var waiting []string
	defer func() {
		if w.t.Failed() {
			w.t.Logf("not joined: %v", waiting)
		}
	}()
	until(w.t, timeout, "every member of "+string(room)+" joined", func(ctx context.Context) (bool, error) {
		waiting = waiting[:0]
		for u, in := range w.joined[room] {
			if !in {
				continue
			}
			joined, err := w.joinedIn(ctx, room, u)
			if err != nil {
				return false, err
			}
			if !joined {
				waiting = append(waiting, string(u))
			}
		}
		return len(waiting) == 0, nil
	})
}

// joinedIn reports whether u has joined room as its own service has it.
func (w *e2eWorld) joinedIn(ctx context.Context, room id.RoomID, u id.UserID) (bool, error) {
	var joined bool
	err := w.puppets[u].db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM room_member
		WHERE room_id = $1 AND user_id = $2 AND membership = 'join')`, room, u).Scan(&joined)
	return joined, err
}

// ours returns the devices of want that belong to s's puppets: the
// service must hold every one of them in the base epoch.
func (w *e2eWorld) ours(s *testService, want []string) []string {
	var out []string
	for _, d := range want {
		user, _, _ := strings.Cut(d, "|")
		if w.puppets[id.UserID(user)] == s {
			out = append(out, d)
		}
	}
	return out
}

func (w *e2eWorld) hasMember(s *testService, room id.RoomID) bool {
	for u, in := range w.joined[room] {
		if in && w.puppets[u] == s {
			return true
		}
	}
	return false
}

func (w *e2eWorld) send(room id.RoomID, sender id.UserID, body string) {
	w.t.Helper()
	res, err := w.puppets[sender].c.groups.Send(context.Background(), sender, "", room, "m.room.message",
		json.RawMessage(fmt.Sprintf(`{"msgtype": "m.text", "body": %q}`, body)), "")
	if err != nil {
		w.t.Fatalf("send %q as %s: %v", body, sender, err)
	}
	m := e2eMessage{room: room, sender: sender, body: body, event: res.EventID}
	for u, in := range w.joined[room] {
		if in && u != sender {
			m.to = append(m.to, u)
		}
	}
	w.messages = append(w.messages, m)
}

// delivered counts, for every message, the recipients whose log holds it
// exactly once; it also reports messages delivered more than once, or to
// puppets that were not members when they were sent.
func (w *e2eWorld) delivered(ctx context.Context) (got, want, dup, stray int, err error) {
	logs := map[id.UserID]map[string]int{} // puppet -> body -> deliveries
	for u, s := range w.puppets {
		// A log holds a membership entry for every join after the
		// puppet's: in a large room, more than a page.
		var entries []groups.Delivered
		for after := int64(0); ; {
			page, err := s.c.groups.Log(ctx, u, after, 1000)
			if err != nil {
				return 0, 0, 0, 0, err
			}
			entries = append(entries, page...)
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].Seq
		}
		logs[u] = map[string]int{}
		for _, e := range entries {
			if e.Kind != groups.KindMessage {
				continue
			}
			var c struct {
				Body string `json:"body"`
			}
			_ = json.Unmarshal(e.Content, &c)
			logs[u][c.Body]++
		}
	}
	w.missing = w.missing[:0]
	for _, m := range w.messages {
		for _, u := range m.to {
			want++
			switch logs[u][m.body] {
			case 1:
				got++
			case 0:
				w.missing = append(w.missing, fmt.Sprintf("%q (event %s in %s) to %s", m.body, m.event, m.room, u))
			default:
				dup++
				w.missing = append(w.missing, fmt.Sprintf("%q (event %s in %s) to %s %d times", m.body, m.event, m.room, u, logs[u][m.body]))
			}
		}
		for u := range w.puppets {
			switch {
			case u == m.sender || slices.Contains(m.to, u):
			case slices.Contains(m.maybe, u):
				if logs[u][m.body] > 1 {
					dup++
					w.missing = append(w.missing, fmt.Sprintf("%q (event %s in %s) to %s %d times", m.body, m.event, m.room, u, logs[u][m.body]))
				}
			case logs[u][m.body] > 0:
				stray++
			}
		}
	}
	return got, want, dup, stray, nil
}

// scrape returns a service's counters by name (summed over labels).
func scrape(s *testService) map[string]float64 {
	out := map[string]float64{}
	for series, v := range dmlsSeries(s) {
		name, _, _ := strings.Cut(series, "{")
		out[name] += v
	}
	return out
}

// scrapeLabelled returns a service's DMLS counters with their labels,
// keyed name{labels}.
func scrapeLabelled(s *testService) map[string]float64 {
	out := map[string]float64{}
	for series, v := range dmlsSeries(s) {
		if strings.Contains(series, "{") {
			out[series] += v
		}
	}
	return out
}

// dmlsSeries reads a service's mlsas_dmls_ series from /metrics, keyed
// as exposed (name{labels}); none if the service does not answer.
func dmlsSeries(s *testService) map[string]float64 {
	out := map[string]float64{}
	resp, err := http.Get(s.proc.base + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if !strings.HasPrefix(line, "mlsas_dmls_") || len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		out[f[0]] += v
	}
	return out
}

// metricLabels sums a labelled counter over the services, restarts
// included, by label set.
func (w *e2eWorld) metricLabels(name string) map[string]float64 {
	out := map[string]float64{}
	add := func(m map[string]float64) {
		for k, v := range m {
			if n, labels, ok := strings.Cut(k, "{"); ok && n == name {
				out["{"+labels] += v
			}
		}
	}
	add(w.metrics)
	for _, s := range w.services {
		add(scrapeLabelled(s))
	}
	return out
}

func (w *e2eWorld) restart(s *testService) {
	w.t.Helper()
	for k, v := range scrape(s) {
		w.metrics[k] += v
	}
	for k, v := range scrapeLabelled(s) {
		w.metrics[k] += v
	}
	s.restart(w.t)
	w.restarts++
}

func (w *e2eWorld) metric(name string) float64 {
	total := w.metrics[name]
	for _, s := range w.services {
		total += scrape(s)[name]
	}
	return total
}

// TestGroupsEndToEnd runs two separate services on one Synapse, so that
// every commit, Welcome and KeyPackage between them crosses the real
// homeserver in the real format, through membership changes, concurrent
// changes on both sides, and a SIGKILL of each.
func TestGroupsEndToEnd(t *testing.T) {
	// B commits soon after a change it sees instead of waiting its turn,
	// so that concurrent commits of both services, forks, happen and must
	// resolve. The jitter keeps B's resolutions from racing A's in lock
	// step for ever when events take longer than the grace to arrive.
	_, svcs := startServices(t, serviceOptions{name: "mlsa"},
		serviceOptions{name: "mlsb", groups: map[string]any{"commit_grace": "300ms", "commit_jitter": "1500ms"}})
	A, B := svcs[0], svcs[1]
	w := newE2EWorld(t, svcs)
	ctx := context.Background()

	// Room 1: a few puppets of both services, one with two devices.
	a1, a2 := w.puppet(A, "a1", 2), w.puppet(A, "a2", 1)
	b1, b2 := w.puppet(B, "b1", 1), w.puppet(B, "b2", 1)
	r1, err := A.c.groups.CreateRoom(ctx, a1, "", groups.CreateRoomOptions{Name: "small", Invite: []id.UserID{a2, b1, b2}})
	if err != nil {
		t.Fatal(err)
	}
	w.joined[r1] = map[id.UserID]bool{a1: true, a2: true, b1: true, b2: true}
	w.converged(r1, 2*time.Minute)
	for _, u := range []id.UserID{a1, a2, b1, b2} {
		w.send(r1, u, "hello from "+string(u))
	}

	// A leave, a kill of A while the change is in flight, a kick.
	if err := B.c.groups.Leave(ctx, b2, r1); err != nil {
		t.Fatal(err)
	}
	w.joined[r1][b2] = false
	w.removals++
	w.restart(A)
	w.converged(r1, 2*time.Minute)
	w.send(r1, b1, "after b2 left")
	if err := A.c.groups.Kick(ctx, a1, r1, a2, "test"); err != nil {
		t.Fatal(err)
	}
	w.joined[r1][a2] = false
	w.removals++
	w.converged(r1, 2*time.Minute)
	w.send(r1, a1, "after a2 was kicked")

	// A re-join and a device added to a joined puppet.
	if err := A.c.groups.Invite(ctx, a1, r1, a2); err != nil {
		t.Fatal(err)
	}
	w.joined[r1][a2] = true
	w.addDevice(b1)
	w.converged(r1, 2*time.Minute)

	// Concurrent changes on both services: forks are expected.
	a3, b3 := w.puppet(A, "a3", 1), w.puppet(B, "b3", 1)
	w.inviteAtOnce(r1, invitation{A, a1, a3}, invitation{B, b1, b3})
	w.restart(B)
	w.converged(r1, 3*time.Minute)
	w.joinedAll(r1, time.Minute)
	for _, u := range []id.UserID{a1, a2, a3, b1, b3} {
		w.send(r1, u, "after the forks from "+string(u))
	}

	// Room 2: fifty puppets across both services, some with two devices.
	var big []id.UserID
	for i := range 50 {
		s := A
		if i%2 == 1 {
			s = B
		}
		devs := 1
		if i%9 == 0 {
			devs = 2
		}
		big = append(big, w.puppet(s, fmt.Sprintf("p%02d", i), devs))
	}
	r2, err := A.c.groups.CreateRoom(ctx, big[0], "", groups.CreateRoomOptions{Name: "big", Invite: big[1:]})
	if err != nil {
		t.Fatal(err)
	}
	w.joined[r2] = map[id.UserID]bool{}
	for _, u := range big {
		w.joined[r2][u] = true
	}
	w.converged(r2, 5*time.Minute)
	w.joinedAll(r2, time.Minute)
	for i := 0; i < len(big); i += 7 {
		w.send(r2, big[i], fmt.Sprintf("big room message %d", i))
	}

	var got, want, dup, stray int
	until(t, 3*time.Minute, "every message delivered", func(ctx context.Context) (bool, error) {
		var err error
		got, want, dup, stray, err = w.delivered(ctx)
		return got == want || dup > 0 || stray > 0, err
	})
	agree := "yes"
	for _, r := range []id.RoomID{r1, r2} {
		w.converged(r, time.Minute)
	}
	if t.Failed() {
		agree = "no"
	}
	devices := 0
	for _, d := range w.devices {
		devices += len(d)
	}
	undecryptable := int(w.metric("mlsas_dmls_messages_undecryptable_total"))
	fmt.Printf("e2e: services=2 rooms=2 puppets=%d devices=%d commits=%d forks=%d resolved=%d welcomes=%d removals=%d restarts=%d messages=%d delivered=%d/%d undecryptable=%d epochs_agree=%s\n",
		len(w.puppets), devices, commitsMade(t, svcs), int(w.metric("mlsas_dmls_forks_seen_total")),
		int(w.metric("mlsas_dmls_forks_resolved_total")), welcomesSent(t, svcs), w.removals, w.restarts,
		len(w.messages), got, want, undecryptable, agree)
	if got != want || dup != 0 || stray != 0 {
		t.Errorf("delivered %d of %d, %d duplicated, %d to non-members", got, want, dup, stray)
	}
	if undecryptable != 0 {
		t.Errorf("%d messages undecryptable", undecryptable)
	}
	// A service's own devices that its commits add are members at once,
	// from the commit's path secrets: no Welcome goes to them.
	for _, s := range svcs {
		var n int
		if err := s.db.QueryRow(ctx, `SELECT count(*) FROM outbox o WHERE kind = 'to_device'
				AND convert_from(content, 'UTF8') LIKE '%.dmls.welcome.%'
				AND (EXISTS (SELECT 1 FROM puppet p WHERE p.user_id = o.to_user_id)
					OR EXISTS (SELECT 1 FROM jsonb_object_keys(coalesce(o.also_to, '{}')) AS k(user_id) JOIN puppet p USING (user_id)))`).
			Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s sent %d Welcome rows to its own devices", s.name, n)
		}
	}
}

// commitsMade counts the commits both services sent (outbox rows of the
// groups hook), which survive restarts.
func commitsMade(t *testing.T, svcs []*testService) int {
	total := 0
	for _, s := range svcs {
		var n int
		if err := s.db.QueryRow(context.Background(), `SELECT count(*) FROM outbox WHERE hook = $1`, groups.HookName).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

func welcomesSent(t *testing.T, svcs []*testService) int {
	total := 0
	for _, s := range svcs {
		var n int
		// A row goes to its recipient and to each of also_to's.
		if err := s.db.QueryRow(context.Background(), `SELECT coalesce(sum(1 + coalesce(
				(SELECT sum(jsonb_array_length(devices)) FROM jsonb_each(also_to) AS e(user_id, devices)), 0)), 0)
			FROM outbox WHERE kind = 'to_device' AND convert_from(content, 'UTF8') LIKE '%.dmls.welcome.%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}
