package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/groups"
	"github.com/mls-appservice/mls-appservice/internal/load"
	"github.com/mls-appservice/mls-appservice/matrix/attachment"
)

// TestOffload runs rooms large enough that their commits and Welcomes go
// through the media repository: first 40 members with the threshold at
// 2 KiB, so that every commit and Welcome is offloaded, then 480 members
// (MLSAS_OFFLOAD_MEMBERS sets another size) at the real default
// media.offload_threshold (48 KiB), which prints the offload: line.
// Service A holds most members, service B a few, so that B's devices join
// by an offloaded Welcome and apply offloaded commits, downloading them
// through Synapse's authenticated media. Then it sends B a forged commit
// and a forged Welcome whose media does not match their file objects'
// hashes, which B must refuse as tampered.
//
// At the real default, 480 members make commits offloaded: a commit's
// UpdatePath in a tree no member but the committer has updated encrypts
// to every other leaf, about 82 bytes each, and passes 48 KiB of base64
// at about 450 members; a Welcome does at about 290. The 480-member room
// takes about six minutes here, most of it service A applying the echoes
// of its own room's events.
//
// Once the room is full it times what a member's arrival and departure
// cost every device in it: each of B's joins (A's commit adding B's device,
// B's device joining from the offloaded Welcome, B's other devices applying
// the commit) and, last, one of A's puppets leaving and being invited back
// (A's commits removing and adding that puppet's devices, B applying
// them), each from the request to the moment both services hold the same
// single epoch with exactly the expected devices. It prints them as the
// offload-latency: line (milliseconds, polled every 200 ms).
//
// MLSAS_OFFLOAD_DEVICES gives A's puppets that many devices each, so that
// the group reaches 10,000 members with a hundred Matrix users
// (MLSAS_OFFLOAD_MEMBERS=10000 MLSAS_OFFLOAD_DEVICES=100; about 13
// minutes here, 10 of them Synapse taking the 10,000 devices' keys).
func TestOffload(t *testing.T) {
	large := 480
	if v := os.Getenv("MLSAS_OFFLOAD_MEMBERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 400 {
			t.Fatalf("MLSAS_OFFLOAD_MEMBERS=%q: want a number of at least 400", v)
		}
		large = n
	}
	devices := 1
	if v := os.Getenv("MLSAS_OFFLOAD_DEVICES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > large/10 {
			t.Fatalf("MLSAS_OFFLOAD_DEVICES=%q: want a number from 1 to a tenth of the members (%d)", v, large/10)
		}
		devices = n
	}
	t.Run("40 members, threshold 2 KiB", func(t *testing.T) { offloadRoom(t, 40, 1) })
	t.Run(fmt.Sprintf("%d members, default threshold", large), func(t *testing.T) { offloadRoom(t, large, devices) })
}

// offloadRoom runs TestOffload's room of the given size (MLS members: A's
// puppets have devices each, B's one); below 400 members the threshold
// comes down to 2 KiB, and the room's figures are logged rather than
// printed as the offload: and offload-latency: lines.
func offloadRoom(t *testing.T, members, devices int) {
	const onB = 3
	quiet := map[string]map[string]any{"logging": {"level": "info"}}
	// Below 400 members the real default (48 KiB) would offload nothing:
	// the threshold comes down so that the same paths run in CI's time.
	if members < 400 {
		quiet["media"] = map[string]any{"offload_threshold": 2048}
	}
	slow := time.Duration(1+members/100) * 2 * time.Minute
	// Only the lowest leaf commits: the other devices' grace outlasts the
	// test. With the usual 3 s, a device of A whose queue lagged behind the
	// committer's commits committed too, each such commit filling its own
	// path in the tree; how many did so depended on the machine's load, and
	// a tree filled enough made the commits that add B's devices small
	// enough to go inline (a CI run: 16 commits offloaded, none of them one
	// that B had to apply). With one committer the tree stays as sparse as
	// the sizes above assume, and the commits B applies are offloaded on
	// any machine.
	lone := map[string]any{"commit_grace": "30m"}
	_, svcs := startServices(t, serviceOptions{name: "offa", extra: quiet, groups: lone},
		serviceOptions{name: "offb", extra: quiet, groups: lone})
	A, B := svcs[0], svcs[1]
	w := newE2EWorld(t, svcs)
	ctx := context.Background()

	start := time.Now()
	as := createPuppets(t, w, A, "oa", (members-onB+devices-1)/devices)
	bs := createPuppets(t, w, B, "ob", onB)
	if devices > 1 {
		addDevices(t, w, A, as, devices-1)
		// A room made while Synapse still takes thousands of devices'
		// keys waits on it at every step; the joins would time that.
		waitPublished(t, A, slow)
	}
	members = len(as)*devices + onB
	t.Logf("%d puppets with %d devices created and published in %s", len(as)+onB, members, time.Since(start).Round(time.Second))

	start = time.Now()
	// Invitations one by one, eight at a time: createRoom with hundreds
	// of invitations outlasts the client's timeout on a busy machine.
	room, err := A.c.groups.CreateRoom(ctx, as[0], "", groups.CreateRoomOptions{Name: "offload"})
	if err != nil {
		t.Fatal(err)
	}
	inviteAll(t, A, as[0], room, as[1:])
	w.joined[room] = map[id.UserID]bool{}
	for _, u := range as {
		w.joined[room][u] = true
	}
	w.converged(room, slow)
	w.joinedAll(room, slow)
	t.Logf("%d of A's puppets in the group and joined in %s", len(as), time.Since(start).Round(time.Second))
	// A's room queue still holds the echoes of its own commits; B's
	// commits would wait behind them.
	start = time.Now()
	until(t, slow, "A's room queue drained", func(ctx context.Context) (bool, error) {
		var n int
		err := A.db.QueryRow(ctx, `SELECT count(*) FROM work_item WHERE queue = $1 AND NOT parked`, "in:room:"+string(room)).Scan(&n)
		return n == 0, err
	})
	t.Logf("A's room queue drained in %s", time.Since(start).Round(time.Second))

	// B's puppets one after the other: each commit adds one device of B
	// (its Welcome offloaded) and, from the second on, B applies it.
	// Each is timed to the group's convergence: what a member's arrival
	// costs every device in the room.
	start = time.Now()
	var joins []time.Duration
	for _, b := range bs {
		joins = append(joins, timed(func() {
			if err := A.c.groups.Invite(ctx, as[0], room, b); err != nil {
				t.Fatal(err)
			}
			w.joined[room][b] = true
			w.converged(room, 3*time.Minute)
		}))
	}
	w.joinedAll(room, time.Minute)
	t.Logf("B's %d puppets joined in %s (each to convergence: %v)", len(bs), time.Since(start).Round(time.Second), joins)
	w.send(room, bs[0], "after the offloaded joins")
	w.send(room, as[1], "from A after the offloaded joins")
	func() {
		defer func() {
			if t.Failed() {
				missing := w.missing
				if len(missing) > 10 {
					missing = append(missing[:10:10], fmt.Sprintf("and %d more", len(w.missing)-10))
				}
				t.Logf("missing: %v", missing)
			}
		}()
		until(t, 2*time.Minute, "messages delivered", func(ctx context.Context) (bool, error) {
			got, want, _, _, err := w.delivered(ctx)
			return got == want, err
		})
	}()

	// A member leaves and comes back: A's commits remove and add all of
	// its devices, and B applies them.
	churner := as[len(as)-1]
	leave := timed(func() {
		if err := A.c.groups.Leave(ctx, churner, room); err != nil {
			t.Fatal(err)
		}
		w.joined[room][churner] = false
		w.converged(room, 3*time.Minute)
	})
	rejoin := timed(func() {
		if err := A.c.groups.Invite(ctx, as[0], room, churner); err != nil {
			t.Fatal(err)
		}
		w.joined[room][churner] = true
		w.converged(room, 3*time.Minute)
	})
	w.joinedAll(room, time.Minute)
	latency := fmt.Sprintf("offload-latency: members=%d devices_per_puppet=%d join_ms=%s leave_ms=%d rejoin_ms=%d",
		members, devices, millis(joins), leave.Milliseconds(), rejoin.Milliseconds())

	// Tampered media: B must refuse a commit and a Welcome whose download
	// does not hash to what their file objects name.
	info, err := B.c.groups.Room(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	forger := as[1]
	forgerDev := w.devices[forger][0]
	cli, err := A.c.puppets.Client(forger, forgerDev)
	if err != nil {
		t.Fatal(err)
	}
	tamperedFile := func() json.RawMessage {
		_, file := attachment.Encrypt([]byte("what the file object names"))
		other := make([]byte, 64)
		rand.Read(other)
		resp, err := cli.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: other, ContentType: "application/octet-stream"})
		if err != nil {
			t.Fatal(err)
		}
		file.URL = resp.ContentURI.String()
		raw, _ := json.Marshal(file)
		return raw
	}
	randomID := func() string {
		b := make([]byte, 32)
		rand.Read(b)
		return b64(b)
	}
	alg := "org.matrix.msc2883.v1.dmls.dhkemx25519-aes128gcm-sha256-ed25519"
	dev := []string{string(forger), string(forgerDev)}
	commit := map[string]any{"algorithm": alg, "ciphertext_file": tamperedFile(), "epoch_creator": dev,
		"commit_event": "$forged", "dmls_epoch": info.EpochID, "sender": dev, "dmls_next_epoch": randomID(),
		"dmls_next_epoch_number": info.Epoch + 1}
	if _, err := cli.SendMessageEvent(ctx, room, event.EventEncrypted, commit); err != nil {
		t.Fatal(err)
	}
	welcome := map[string]any{"algorithm": "org.matrix.msc2883.v1.dmls.welcome.dhkemx25519-aes128gcm-sha256-ed25519",
		"ciphertext_file": tamperedFile(), "room_id": room, "sender": dev, "resolves": []any{},
		"commit_event": "$forged", "dmls_base_epoch": info.EpochID, "dmls_epoch": randomID(),
		"dmls_epoch_number": info.Epoch + 1, "dmls_resolves": []any{}}
	target := bs[0]
	if _, err := cli.SendToDevice(ctx, event.ToDeviceEncrypted, &mautrix.ReqSendToDevice{Messages: map[id.UserID]map[id.DeviceID]*event.Content{
		target: {w.devices[target][0]: {Raw: welcome}}}}); err != nil {
		t.Fatal(err)
	}
	const forged = 2
	var tampered int
	until(t, 2*time.Minute, "B refuses the tampered commit and Welcome", func(ctx context.Context) (bool, error) {
		tampered = int(metricWith(B, "mlsas_dmls_offload_downloads_total", `result="tampered"`))
		return tampered >= forged, nil
	})
	w.converged(room, time.Minute)

	commits := int(metricWith(A, "mlsas_dmls_offloaded_total", `kind="commit"`) + metricWith(B, "mlsas_dmls_offloaded_total", `kind="commit"`))
	welcomes := int(metricWith(A, "mlsas_dmls_offloaded_total", `kind="welcome"`) + metricWith(B, "mlsas_dmls_offloaded_total", `kind="welcome"`))
	groupInfos := int(metricWith(A, "mlsas_dmls_offloaded_total", `kind="group_info"`) + metricWith(B, "mlsas_dmls_offloaded_total", `kind="group_info"`))
	fetchedCommits := int(metricWith(B, "mlsas_dmls_offload_downloads_total", `kind="commit",result="ok"`))
	fetchedWelcomes := int(metricWith(B, "mlsas_dmls_offload_downloads_total", `kind="welcome",result="ok"`))
	t.Logf("B downloaded %d commits and %d Welcomes", fetchedCommits, fetchedWelcomes)
	line := fmt.Sprintf("offload: members=%d commits=%d welcomes=%d group_infos=%d tampered_refused=%d/%d",
		members, commits, welcomes, groupInfos, tampered, forged)
	if members < 400 {
		t.Logf("at a 2 KiB threshold: %s", line)
		t.Logf("at a 2 KiB threshold: %s", latency)
	} else {
		fmt.Println(line)
		fmt.Println(latency)
	}
	if fetchedWelcomes < 1 {
		t.Errorf("B joined by no offloaded Welcome (%d Welcomes offloaded)", welcomes)
	}
	// Between 400 and 460 members a commit at the default threshold may
	// still fit in an event; below 400 the threshold is 2 KiB.
	if (members < 400 || members >= 460) && fetchedCommits < 1 {
		t.Errorf("B applied no offloaded commit (%d commits offloaded)", commits)
	}
	if tampered != forged {
		t.Errorf("tampered downloads refused: %d, want %d", tampered, forged)
	}
}

// createPuppets makes n puppets of s, one device each, eight at a time.
func createPuppets(t *testing.T, w *e2eWorld, s *testService, prefix string, n int) []id.UserID {
	t.Helper()
	users := make([]id.UserID, n)
	devs := make([]id.DeviceID, n)
	eightAtATime(t, n, func(i int) error {
		name := fmt.Sprintf("%s%04d", prefix, i)
		devs[i] = id.DeviceID(strings.ToUpper(name))
		u, err := s.c.groups.CreatePuppet(context.Background(), name, name, "", devs[i])
		if err != nil {
			return fmt.Errorf("create puppet %s: %w", name, err)
		}
		users[i] = u
		return nil
	})
	for i, u := range users {
		w.puppets[u] = s
		w.devices[u] = []id.DeviceID{devs[i]}
	}
	return users
}

// addDevices gives each of users n more devices, eight users at a time.
func addDevices(t *testing.T, w *e2eWorld, s *testService, users []id.UserID, n int) {
	t.Helper()
	added := make([][]id.DeviceID, len(users))
	eightAtATime(t, len(users), func(i int) error {
		for d := range n {
			dev := id.DeviceID(fmt.Sprintf("%sX%d", w.devices[users[i]][0], d+1))
			if err := s.c.groups.AddDevice(context.Background(), users[i], dev, ""); err != nil {
				return fmt.Errorf("add device %s to %s: %w", dev, users[i], err)
			}
			added[i] = append(added[i], dev)
		}
		return nil
	})
	for i, u := range users {
		w.devices[u] = append(w.devices[u], added[i]...)
	}
}

// eightAtATime calls fn for 0 to n-1 on eight goroutines, and fails the
// test after them all if any call failed.
func eightAtATime(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// waitPublished waits until s has sent everything in its outbox and
// cross-signed every device.
func waitPublished(t *testing.T, s *testService, timeout time.Duration) {
	t.Helper()
	until(t, timeout, s.name+"'s devices published", func(ctx context.Context) (bool, error) {
		unsent, unsigned, err := load.Unpublished(ctx, s.db.Pool)
		return unsent+unsigned == 0, err
	})
}

// timed returns how long fn took.
func timed(fn func()) time.Duration {
	start := time.Now()
	fn()
	return time.Since(start)
}

// millis formats durations as milliseconds, comma-separated.
func millis(ds []time.Duration) string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = strconv.FormatInt(d.Milliseconds(), 10)
	}
	return strings.Join(out, ",")
}

// inviteAll invites users to room as by, eight at a time.
func inviteAll(t *testing.T, s *testService, by id.UserID, room id.RoomID, users []id.UserID) {
	t.Helper()
	eightAtATime(t, len(users), func(i int) error {
		if err := s.c.groups.Invite(context.Background(), by, room, users[i]); err != nil {
			return fmt.Errorf("invite %s: %w", users[i], err)
		}
		return nil
	})
}

// metricWith sums a service's samples of metric whose labels contain
// labels.
func metricWith(s *testService, metric, labels string) float64 {
	resp, err := http.Get(s.proc.base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		name, rest, _ := strings.Cut(line, "{")
		if name != metric || !strings.Contains(rest, labels) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		total += v
	}
	return total
}

func b64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
