package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/botapi/client"
	"github.com/mls-appservice/mls-appservice/internal/testenv"
)

// sdkBot is one of csapi/testdata's SDK bots, run as a subprocess that
// the test drives through stdin and reads JSON lines from; it may be
// stopped and started again (same state file).
type sdkBot struct {
	t    *testing.T
	name string
	argv []string
	env  []string

	mu     sync.Mutex
	lines  []map[string]any
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
	logf   *os.File
}

func newSDKBot(t *testing.T, name string, argv []string, env ...string) *sdkBot {
	b := &sdkBot{t: t, name: name, argv: argv, env: append(os.Environ(), env...)}
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	b.logf = logf
	t.Cleanup(func() {
		b.kill()
		logf.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("%s output:\n%s", name, tail(string(out), 8000))
		}
	})
	return b
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// start runs the bot and waits for it to say it is ready.
func (b *sdkBot) start() {
	b.t.Helper()
	from := b.mark()
	cmd := exec.Command(b.argv[0], b.argv[1:]...)
	cmd.Env = b.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = b.logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start %s: %v", b.name, err)
	}
	exited := make(chan struct{})
	b.mu.Lock()
	b.cmd, b.stdin, b.exited = cmd, stdin, exited
	b.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(b.logf, "stdout: %s\n", sc.Text())
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			b.mu.Lock()
			b.lines = append(b.lines, m)
			b.mu.Unlock()
		}
		_ = cmd.Wait()
		close(exited)
	}()
	b.waitFor(from, "ready", func(m map[string]any) bool { return m["event"] == "ready" })
}

// do writes a command to the bot's stdin.
func (b *sdkBot) do(format string, args ...any) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := fmt.Fprintf(b.stdin, format+"\n", args...); err != nil {
		b.t.Fatalf("%s: write command: %v", b.name, err)
	}
}

// stop asks the bot to quit and waits for it to exit.
func (b *sdkBot) stop() {
	b.t.Helper()
	b.do("quit")
	select {
	case <-b.exited:
	case <-time.After(time.Minute):
		b.t.Fatalf("%s did not quit", b.name)
	}
}

func (b *sdkBot) kill() {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// mark is the position in the bot's output after which waitFor looks.
func (b *sdkBot) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.lines)
}

// all returns the bot's lines that match.
func (b *sdkBot) all(match func(map[string]any) bool) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, m := range b.lines {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

// waitFor waits for a line after from that matches, failing on an error
// line of the bot.
func (b *sdkBot) waitFor(from int, what string, match func(map[string]any) bool) map[string]any {
	b.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		lines := b.lines[from:]
		for _, m := range lines {
			if m["event"] == "error" {
				b.mu.Unlock()
				b.t.Fatalf("%s failed while waiting for %s: %v", b.name, what, m)
			}
			if match(m) {
				b.mu.Unlock()
				return m
			}
		}
		b.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("%s: no %s within 3 minutes", b.name, what)
	return nil
}

func line(name string, kv ...string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		if m["event"] != name {
			return false
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if fmt.Sprint(m[kv[i]]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// csapiOptions turn on the bot API (to make puppets) and the façade, and
// leave joining to the bots.
func csapiOptions(t testing.TB, name string) serviceOptions {
	o := botAPIOptions(t, name)
	o.extra["csapi"] = map[string]any{"enabled": true, "hostname": "127.0.0.1", "port": freePort(t),
		"sync_hold": "5s", "send_wait": "50s"}
	o.groups = map[string]any{"autojoin": "off"}
	return o
}

// accessToken issues a façade token with the operator command and returns
// it with the device it stands for.
func accessToken(t testing.TB, cfgPath, bot, puppet string) (token, device string) {
	t.Helper()
	out := strings.TrimSpace(runCommand(t, cfgPath, "bots", "token", bot, puppet))
	lines := strings.Split(out, "\n")
	token = lines[len(lines)-1]
	_, rest, _ := strings.Cut(lines[0], " device ")
	device, _, _ = strings.Cut(rest, " ")
	if !strings.HasPrefix(token, "mlsat_") || device == "" {
		t.Fatalf("bots token printed %q", out)
	}
	return token, device
}

// TestCSAPISDKBots runs a matrix-bot-sdk bot and a matrix-nio bot, each an
// unmodified-style program with its SDK's encryption off, against the
// real service's client-server façade: the bot-sdk bot creates a room and
// invites the nio bot, which joins by itself; they talk both ways,
// each gets a message sent while it was stopped on its first /sync after
// starting again, and both leave. The homeserver (its admin API) holds
// no plaintext of the room. Requests the SDKs do not make (refused
// endpoints, tokens, transaction ids, /messages, /context, /event,
// masquerading) are checked with plain HTTP.
//
// MLSAS_CSAPI_LATENCY=N adds N messages from the bot-sdk bot to the nio
// bot, one after the other, then N the other way, and prints the time
// each took from send to the receiver's callback (p50, p99), and the
// time of the sender's PUT /send alone:
//
//	MLSAS_CSAPI_LATENCY=100 ./scripts/with-env go test -count=1 -v -run TestCSAPISDKBots ./cmd/mls-appservice/
func TestCSAPISDKBots(t *testing.T) {
	nioPython := testenv.NioPython(t)
	botsdkDir, _ := filepath.Abs("../../csapi/testdata/botsdk")
	if _, err := os.Stat(filepath.Join(botsdkDir, "node_modules", "matrix-bot-sdk")); err != nil {
		t.Fatalf("matrix-bot-sdk is not installed in %s (./scripts/test and ./scripts/with-env run npm ci there): %v", botsdkDir, err)
	}
	hs, svcs := startServices(t, csapiOptions(t, "mlsc"))
	S := svcs[0]
	ctx := context.Background()
	facade := fmt.Sprintf("http://127.0.0.1:%d", S.cfg.CSAPI.Port)
	const bot = "sdkbots"
	api := client.New(botAPIBase(t, S.cfgPath), addBot(t, S.cfgPath, bot))
	mk := func(name string) string {
		p, err := api.CreatePuppet(ctx, client.CreatePuppet{Name: name, DisplayName: name})
		if err != nil {
			t.Fatalf("create puppet %s: %v", name, err)
		}
		return p.UserID
	}
	nioUser, sdkUser := mk("nio"), mk("botsdk")
	nioToken, nioDevice := accessToken(t, S.cfgPath, bot, nioUser)
	sdkToken, _ := accessToken(t, S.cfgPath, bot, sdkUser)
	state := t.TempDir()

	nio := newSDKBot(t, "matrix-nio", []string{nioPython, "../../csapi/testdata/nio/bot.py"},
		"MATRIX_HOMESERVER="+facade, "MATRIX_USER_ID="+nioUser, "MATRIX_DEVICE_ID="+nioDevice,
		"MATRIX_ACCESS_TOKEN="+nioToken, "BOT_STATE="+filepath.Join(state, "nio.json"))
	sdk := newSDKBot(t, "matrix-bot-sdk", []string{"node", filepath.Join(botsdkDir, "bot.js")},
		"MATRIX_HOMESERVER="+facade, "MATRIX_ACCESS_TOKEN="+sdkToken, "BOT_STATE="+filepath.Join(state, "botsdk.json"))
	nio.start()
	sdk.start()
	begin := time.Now()
	phase := func(name string) { t.Logf("%6.2fs %s", time.Since(begin).Seconds(), name) }

	// The bot-sdk bot creates a room and invites the nio bot, which
	// joins by itself (groups.autojoin is off).
	from := sdk.mark()
	sdk.do("create %s", nioUser)
	room := sdk.waitFor(from, "room", line("created"))["room"].(string)
	nio.waitFor(0, "nio's join", line("joined", "room", room))
	sdk.waitFor(from, "nio's join seen", line("member", "user", nioUser, "membership", "join"))

	// Both ways: the nio bot echoes what the bot-sdk bot says, and says
	// something of its own.
	fromNio, fromSDK := nio.mark(), sdk.mark()
	for i := 1; i <= 3; i++ {
		sdk.do("send %s hello %d csapi-msg", room, i)
	}
	nio.do("send %s nio here csapi-msg", room)
	for i := 1; i <= 3; i++ {
		body := fmt.Sprintf("hello %d csapi-msg", i)
		nio.waitFor(fromNio, "message "+body, line("message", "body", body, "decrypted", "true"))
		sdk.waitFor(fromSDK, "echo of "+body, line("message", "body", "echo: "+body, "decrypted", "true"))
	}
	sdk.waitFor(fromSDK, "nio's own message", line("message", "body", "nio here csapi-msg"))
	// The bot-sdk bot can see an echo before nio prints that its send
	// returned; nio is stopped next, and a send it never reported would
	// be counted as received but not sent.
	for i := 1; i <= 3; i++ {
		nio.waitFor(fromNio, "nio's report of its echo", line("sent", "body", fmt.Sprintf("echo: hello %d csapi-msg", i)))
	}
	nio.waitFor(fromNio, "nio's report of its message", line("sent", "body", "nio here csapi-msg"))

	// Offline: each bot is stopped, the other says something, and the
	// stopped bot, started again, gets it on its first /sync. A bot is
	// stopped only once its /sync has given it every event sent so far:
	// Synapse answers a restarted client's first /sync from the answer it
	// cached for the stopped one's long-poll (same since token), so that
	// long-poll must be waiting for the message sent while it is stopped.
	phase("both ways done")
	caughtUp(nio, sdk, nio)
	phase("nio caught up")
	nio.stop()
	from = sdk.mark()
	sdk.do("send %s offline: for nio csapi-msg", room)
	sdk.waitFor(from, "offline message sent", line("sent", "body", "offline: for nio csapi-msg"))
	fromNio = nio.mark()
	nio.start()
	got := nio.waitFor(fromNio, "the offline message", line("message", "body", "offline: for nio csapi-msg"))
	if got["sync"] != float64(1) {
		t.Errorf("nio got the offline message on sync %v, want its first", got["sync"])
	}
	sdk.waitFor(0, "echo of the offline message", line("message", "body", "echo: offline: for nio csapi-msg"))
	phase("nio offline catch-up done")
	caughtUp(sdk, sdk, nio)
	phase("bot-sdk caught up")
	sdk.stop()
	from = nio.mark()
	nio.do("send %s offline: for bot-sdk csapi-msg", room)
	nio.waitFor(from, "offline message sent", line("sent", "body", "offline: for bot-sdk csapi-msg"))
	fromSDK = sdk.mark()
	sdk.start()
	got = sdk.waitFor(fromSDK, "the offline message", line("message", "body", "offline: for bot-sdk csapi-msg"))
	if got["sync"] != float64(1) {
		t.Errorf("bot-sdk got the offline message on sync %v, want its first", got["sync"])
	}

	phase("bot-sdk offline catch-up done")
	// What the SDKs did not exercise, with plain HTTP as the nio puppet.
	raw := checkFacadeHTTP(t, facade, nioToken, nioUser, room, S.cfg.AppService.BotUsername)

	if n, _ := strconv.Atoi(os.Getenv("MLSAS_CSAPI_LATENCY")); n > 0 {
		measureLatency(t, sdk, nio, room, n)
		measureLatency(t, nio, sdk, room, n)
	}

	phase("plain HTTP checks done")
	// Everything each sent reached the other.
	sentBy := func(b *sdkBot) int { return len(b.all(line("sent"))) }
	received := func(b *sdkBot) int {
		ids := map[any]bool{}
		for _, m := range b.all(line("message")) {
			ids[m["event_id"]] = true
		}
		return len(ids)
	}
	eventually(t, 2*time.Minute, "every message to arrive", func() (bool, error) {
		return received(nio) == sentBy(sdk) && received(sdk) == sentBy(nio)+raw, nil
	})
	if u := append(nio.all(line("undecrypted")), sdk.all(line("undecrypted"))...); len(u) > 0 {
		t.Errorf("events the bots got undecrypted: %v", u)
	}

	plaintext, encrypted := homeserverPlaintext(t, hs, room)
	if encrypted < sentBy(sdk)+sentBy(nio)+raw {
		t.Errorf("the homeserver holds %d DMLS events, fewer than the %d messages sent", encrypted, sentBy(sdk)+sentBy(nio)+raw)
	}
	if plaintext != 0 {
		t.Errorf("the homeserver holds %d events of the room in plaintext", plaintext)
	}

	phase("homeserver checked")
	// Both leave; the homeserver sees them gone.
	from = nio.mark()
	nio.do("leave %s", room)
	nio.waitFor(from, "nio's leave", line("left", "room", room))
	// A send after leaving is refused as the homeserver would refuse it,
	// not answered 5xx after csapi.send_wait. (It takes as long as groups
	// takes with the leave: groups.Send waits for the room's queue.)
	req, _ := http.NewRequest("PUT", facade+"/_matrix/client/v3/rooms/"+url.PathEscape(room)+"/send/m.room.message/after-leave",
		strings.NewReader(`{"msgtype":"m.text","body":"after leaving csapi-msg"}`))
	req.Header.Set("Authorization", "Bearer "+nioToken)
	sendStart := time.Now()
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("send after leaving: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(body), "M_FORBIDDEN") {
			t.Errorf("send after leaving: %d %s after %s, want 403 M_FORBIDDEN", resp.StatusCode, body, time.Since(sendStart))
		}
		t.Logf("send after leaving: %d after %s", resp.StatusCode, time.Since(sendStart).Round(time.Millisecond))
	}
	from = sdk.mark()
	sdk.do("leave %s", room)
	sdk.waitFor(from, "bot-sdk's leave", line("left", "room", room))
	var members struct {
		Members []string `json:"members"`
	}
	adminGet(t, hs, "/_synapse/admin/v1/rooms/"+url.PathEscape(room)+"/members", &members)
	if slices.Contains(members.Members, nioUser) || slices.Contains(members.Members, sdkUser) {
		t.Errorf("after leaving, the room's members are %v", members.Members)
	}

	for _, b := range []struct {
		bot      *sdkBot
		expected int
	}{{sdk, sentBy(nio) + raw}, {nio, sentBy(sdk)}} {
		from := b.bot.mark()
		b.bot.do("report %d %d", b.expected, plaintext)
		line := b.bot.waitFor(from, "report", line("report"))["line"].(string)
		fmt.Println(line)
		if !strings.Contains(line, fmt.Sprintf("received=%d/%d", b.expected, b.expected)) || !strings.Contains(line, "offline_catchup=yes") ||
			!strings.Contains(line, "rooms=1 ") || !strings.HasSuffix(line, "plaintext_on_homeserver=0") {
			t.Errorf("%s reports %q", b.bot.name, line)
		}
	}
}

// caughtUp waits until b's /sync has given it every event that the bots
// said they sent (others' as messages, its own as "own").
func caughtUp(b *sdkBot, bots ...*sdkBot) {
	b.t.Helper()
	for _, o := range bots {
		for _, m := range o.all(line("sent")) {
			id := fmt.Sprint(m["event_id"])
			b.waitFor(0, "event "+id, func(m map[string]any) bool {
				return (m["event"] == "message" || m["event"] == "own") && m["event_id"] == id
			})
		}
	}
}

// checkFacadeHTTP checks with plain HTTP, as the puppet whose token it
// is, what the SDK bots do not exercise, and returns how many messages it
// sent to the room.
func checkFacadeHTTP(t *testing.T, facade, token, user, room, asBot string) int {
	t.Helper()
	call := func(method, path, tok string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			data, _ := json.Marshal(body)
			rd = bytes.NewReader(data)
		}
		req, err := http.NewRequest(method, facade+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		data, _ := io.ReadAll(resp.Body)
		_ = json.Unmarshal(data, &out)
		return resp.StatusCode, out
	}
	expect := func(what string, status int, out map[string]any, wantStatus int, wantErrcode string) {
		t.Helper()
		if status != wantStatus || (wantErrcode != "" && out["errcode"] != wantErrcode) {
			t.Errorf("%s: %d %v, want %d %s", what, status, out, wantStatus, wantErrcode)
		}
	}
	c := "/_matrix/client/v3"
	r := url.PathEscape(room)

	st, out := call("GET", "/.well-known/matrix/client", "", nil)
	if hs, _ := out["m.homeserver"].(map[string]any); st != 200 || hs["base_url"] != facade {
		t.Errorf("well-known: %d %v", st, out)
	}
	st, out = call("GET", "/_matrix/client/versions", "", nil)
	if vs, _ := out["versions"].([]any); st != 200 || len(vs) == 0 {
		t.Errorf("versions: %d %v", st, out)
	}
	features, _ := out["unstable_features"].(map[string]any)
	for name, on := range features {
		if on == true && (strings.Contains(name, "msc3575") || strings.Contains(name, "msc4186")) {
			t.Errorf("versions advertises %s, which the façade refuses", name)
		}
	}
	st, out = call("GET", c+"/account/whoami", "", nil)
	expect("whoami without a token", st, out, 401, "M_MISSING_TOKEN")
	st, out = call("GET", c+"/account/whoami", "mlsat_0011223344556677_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil)
	expect("whoami with an unknown token", st, out, 401, "M_UNKNOWN_TOKEN")
	st, out = call("GET", c+"/account/whoami?access_token="+url.QueryEscape(token), "", nil)
	if st != 200 || out["user_id"] != user {
		t.Errorf("whoami with access_token: %d %v", st, out)
	}
	st, out = call("POST", c+"/keys/upload", token, map[string]any{"one_time_keys": map[string]any{}})
	expect("keys/upload", st, out, 404, "M_UNRECOGNIZED")
	st, out = call("POST", "/_matrix/client/r0/keys/claim", token, map[string]any{"one_time_keys": map[string]any{}})
	expect("r0 keys/claim", st, out, 404, "M_UNRECOGNIZED")
	st, out = call("POST", "/_matrix/client/unstable/keys/upload", token, map[string]any{"one_time_keys": map[string]any{}})
	expect("unstable keys/upload", st, out, 404, "M_UNRECOGNIZED")
	st, out = call("POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", token, map[string]any{})
	expect("sliding sync", st, out, 404, "M_UNRECOGNIZED")
	st, out = call("POST", c+"/login", "", map[string]any{"type": "m.login.password", "user": user, "password": "x"})
	expect("password login", st, out, 400, "M_UNKNOWN")
	// A bot cannot pick its user: the façade masquerades as the token's.
	st, out = call("GET", c+"/joined_rooms?user_id="+url.QueryEscape("@"+asBot+":localhost"), token, nil)
	if rooms, _ := out["joined_rooms"].([]any); st != 200 || !slices.Contains(rooms, any(room)) {
		t.Errorf("joined_rooms with another user_id: %d %v (want the puppet's rooms, with %s)", st, out, room)
	}
	// Passed through: the puppet's profile.
	st, out = call("GET", c+"/profile/"+url.PathEscape(user)+"/displayname", token, nil)
	if st != 200 || out["displayname"] != "nio" {
		t.Errorf("profile: %d %v", st, out)
	}
	// The same transaction id twice is one event.
	body := map[string]any{"msgtype": "m.text", "body": "echo: raw csapi-msg"}
	st, first := call("PUT", c+"/rooms/"+r+"/send/m.room.message/raw-1", token, body)
	st2, again := call("PUT", c+"/rooms/"+r+"/send/m.room.message/raw-1", token, body)
	if st != 200 || st2 != 200 || first["event_id"] == nil || first["event_id"] != again["event_id"] {
		t.Fatalf("send twice with one transaction id: %d %v, %d %v", st, first, st2, again)
	}
	eventID := first["event_id"].(string)
	st, out = call("PUT", c+"/rooms/"+r+"/send/m.room.message/raw-2", token, map[string]any{"msgtype": 5, "body": "echo: odd csapi-msg"})
	if st != 200 {
		t.Errorf("send of a content that is an object but odd: %d %v", st, out)
	}
	st, out = call("PUT", c+"/rooms/"+r+"/send/m.room.message/raw-3", token, []int{1})
	expect("send of a non-object", st, out, 400, "M_NOT_JSON")
	// Synapse serves sends under the unstable prefix and without a
	// transaction id too: the façade encrypts those as well (the
	// homeserver check after this finds no plaintext of them).
	for _, send := range []struct{ method, path string }{
		{"PUT", "/_matrix/client/unstable/rooms/" + r + "/send/m.room.message/raw-4"},
		{"POST", c + "/rooms/" + r + "/send/m.room.message"},
	} {
		st, out = call(send.method, send.path, token, map[string]any{"msgtype": "m.text", "body": "echo: " + send.method + " csapi-msg"})
		if id, _ := out["event_id"].(string); st != 200 || id == "" {
			t.Errorf("%s %s: %d %v", send.method, send.path, st, out)
		}
	}

	decrypted := func(what string, ev map[string]any) {
		t.Helper()
		unsigned, _ := ev["unsigned"].(map[string]any)
		note, _ := unsigned["org.mls-appservice.mls"].(map[string]any)
		content, _ := ev["content"].(map[string]any)
		if ev["type"] != "m.room.message" || content["body"] != "echo: raw csapi-msg" || note["decrypted"] != true ||
			unsigned["transaction_id"] != "raw-1" {
			t.Errorf("%s: %v", what, ev)
		}
	}
	eventually(t, time.Minute, "the raw message in /event", func() (bool, error) {
		st, out = call("GET", c+"/rooms/"+r+"/event/"+url.PathEscape(eventID), token, nil)
		return st == 200 && out["type"] == "m.room.message", nil
	})
	decrypted("/event", out)
	st, out = call("GET", c+"/rooms/"+r+"/context/"+url.PathEscape(eventID)+"?limit=5", token, nil)
	ev, _ := out["event"].(map[string]any)
	decrypted("/context", ev)
	st, out = call("GET", c+"/rooms/"+r+"/messages?dir=b&limit=100", token, nil)
	chunk, _ := out["chunk"].([]any)
	if st != 200 || len(chunk) == 0 {
		t.Fatalf("/messages: %d %v", st, out)
	}
	found := false
	for _, e := range chunk {
		ev := e.(map[string]any)
		if ev["type"] == "m.room.encrypted" {
			t.Errorf("/messages gives an encrypted event: %v", ev)
		}
		if ev["event_id"] == eventID {
			found = true
			decrypted("/messages", ev)
		}
	}
	if !found {
		t.Errorf("/messages lacks %s", eventID)
	}
	return 4
}

// measureLatency sends n messages from one bot to the other, one after
// the other, and prints how long each took (p50, p99).
func measureLatency(t *testing.T, from, to *sdkBot, room string, n int) {
	t.Helper()
	mark, start := to.mark(), time.Now()
	fm := from.mark()
	from.do("bench %s %d", room, n)
	from.waitFor(fm, "bench", line("bench_done"))
	var lat []float64
	eventually(t, 5*time.Minute, "every ping to arrive", func() (bool, error) {
		lat = lat[:0]
		to.mu.Lock()
		for _, m := range to.lines[mark:] {
			if v, ok := m["latency_ms"].(float64); ok {
				lat = append(lat, v)
			}
		}
		to.mu.Unlock()
		return len(lat) >= n, nil
	})
	// How long the sender's PUT /send took (encrypted, queued, taken by
	// the homeserver), the first part of each message's time.
	var send []float64
	from.mu.Lock()
	for _, m := range from.lines[fm:] {
		if v, ok := m["took_ms"].(float64); ok && strings.HasPrefix(fmt.Sprint(m["body"]), "ping ") {
			send = append(send, v)
		}
	}
	from.mu.Unlock()
	slices.Sort(lat)
	slices.Sort(send)
	p := func(v []float64, q float64) float64 {
		if len(v) == 0 {
			return 0
		}
		return v[int(q*float64(len(v)-1))]
	}
	fmt.Printf("csapi-latency: from=%s to=%s messages=%d p50_ms=%.1f p99_ms=%.1f max_ms=%.1f send_p50_ms=%.1f send_p99_ms=%.1f elapsed_s=%.1f\n",
		from.name, to.name, len(lat), p(lat, 0.5), p(lat, 0.99), lat[len(lat)-1], p(send, 0.5), p(send, 0.99), time.Since(start).Seconds())
}

// homeserverPlaintext reads every event of the room as the homeserver
// holds it (admin API) and counts the message events that are not DMLS
// ciphertext, or that hold a message body in clear, and the DMLS ones.
func homeserverPlaintext(t *testing.T, hs *testenv.Homeserver, room string) (plaintext, encrypted int) {
	t.Helper()
	from := ""
	for {
		var page struct {
			Chunk []json.RawMessage `json:"chunk"`
			End   string            `json:"end"`
		}
		path := "/_synapse/admin/v1/rooms/" + url.PathEscape(room) + "/messages?dir=f&limit=200"
		if from != "" {
			path += "&from=" + url.QueryEscape(from)
		}
		adminGet(t, hs, path, &page)
		for _, raw := range page.Chunk {
			var ev struct {
				Type     string  `json:"type"`
				StateKey *string `json:"state_key"`
				Content  struct {
					Algorithm string `json:"algorithm"`
				} `json:"content"`
			}
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatalf("admin API event: %v", err)
			}
			switch {
			case bytes.Contains(raw, []byte("csapi-msg")) || bytes.Contains(raw, []byte(`"ping `)):
				plaintext++
				t.Errorf("a message body in clear on the homeserver: %s", raw)
			case ev.StateKey != nil:
			case ev.Type == "m.room.encrypted" && strings.HasPrefix(ev.Content.Algorithm, "org.matrix.msc2883.v1.dmls."):
				encrypted++
			default:
				plaintext++
				t.Errorf("an event of the room that is not DMLS ciphertext: %s", raw)
			}
		}
		if len(page.Chunk) == 0 || page.End == "" || page.End == from {
			return plaintext, encrypted
		}
		from = page.End
	}
}

// adminGet calls the homeserver's admin API.
func adminGet(t *testing.T, hs *testenv.Homeserver, path string, out any) {
	t.Helper()
	req, err := http.NewRequest("GET", hs.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+hs.AdminToken(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}
