package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/botapi/client"
)

// exampleBot is one of examples/ running as a subprocess.
type exampleBot struct {
	name   string
	mu     sync.Mutex
	lines  []string
	puppet chan string
}

func startExample(t *testing.T, name string, cmd *exec.Cmd, base, token string) *exampleBot {
	t.Helper()
	b := &exampleBot{name: name, puppet: make(chan string, 1)}
	cmd.Env = append(os.Environ(), "MLS_BOTAPI_URL="+base, "MLS_BOT_TOKEN="+token)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			errs, _ := os.ReadFile(logf.Name())
			b.mu.Lock()
			t.Logf("%s stdout:\n%s\nstderr:\n%s", name, strings.Join(b.lines, "\n"), errs)
			b.mu.Unlock()
		}
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if p, ok := strings.CutPrefix(line, "puppet: "); ok {
				b.puppet <- p
			}
			b.mu.Lock()
			b.lines = append(b.lines, line)
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *exampleBot) saw(line string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.lines {
		if l == line {
			return true
		}
	}
	return false
}

func (b *exampleBot) waitPuppet(t *testing.T) string {
	t.Helper()
	select {
	case p := <-b.puppet:
		return p
	case <-time.After(3 * time.Minute):
		t.Fatalf("%s did not start", b.name)
		return ""
	}
}

// TestExampleBots runs examples/echo-python and examples/echo-go against
// the real service: a third bot invites both puppets into a DMLS room and
// says hello, each example echoes it, and each sees the other's echo.
func TestExampleBots(t *testing.T) {
	_, svcs := startServices(t, botAPIOptions(t, "mlsx"))
	S := svcs[0]
	base := botAPIBase(t, S.cfgPath)
	goBin := filepath.Join(t.TempDir(), "echo-go")
	if out, err := exec.Command("go", "build", "-o", goBin, "../../examples/echo-go").CombinedOutput(); err != nil {
		t.Fatalf("build examples/echo-go: %v\n%s", err, out)
	}
	py := startExample(t, "echo-python", exec.Command("python3", "../../examples/echo-python/echo.py", "--name", "echo-py"),
		base, addBot(t, S.cfgPath, "python"))
	gob := startExample(t, "echo-go", exec.Command(goBin, "-name", "echo-go"), base, addBot(t, S.cfgPath, "go"))
	pyPuppet, goPuppet := py.waitPuppet(t), gob.waitPuppet(t)

	ctx := context.Background()
	driver := client.New(base, addBot(t, S.cfgPath, "driver"))
	d, err := driver.CreatePuppet(ctx, client.CreatePuppet{Name: "driver"})
	if err != nil {
		t.Fatal(err)
	}
	room, err := driver.CreateRoom(ctx, d.UserID, client.CreateRoom{Name: "examples", Invite: []string{pyPuppet, goPuppet}})
	if err != nil {
		t.Fatal(err)
	}
	waitConverged(t, driver, d.UserID, room, 3)
	sendRetry(t, driver, d.UserID, room, "hello examples", "hello")

	want := map[*exampleBot]string{
		py:  fmt.Sprintf("message from %s in %s: echo: hello examples", goPuppet, room),
		gob: fmt.Sprintf("message from %s in %s: echo: hello examples", pyPuppet, room),
	}
	eventually(t, 3*time.Minute, "the examples to exchange their echoes", func() (bool, error) {
		return py.saw(want[py]) && gob.saw(want[gob]), nil
	})
	fmt.Printf("botapi-examples: python and go exchanged echoes in %s\n", room)
}
