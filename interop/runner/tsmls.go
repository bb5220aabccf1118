package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ErrNodeModulesMissing means the ts-mls driver's dependencies are not
// installed.
var ErrNodeModulesMissing = errors.New("interop/tsmls/node_modules is missing: run `npm ci --prefix interop/tsmls`")

// TSMLS is a running ts-mls MLSClient server (interop/tsmls/server.js).
type TSMLS struct {
	Addr string
	cmd  *exec.Cmd
}

// StartTSMLS starts the ts-mls driver found in dir (the interop/tsmls
// directory) on a free loopback port and waits until it listens.
func StartTSMLS(ctx context.Context, dir string) (*TSMLS, error) {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ts-mls")); err != nil {
		return nil, ErrNodeModulesMissing
	}
	cmd := exec.Command("node", filepath.Join(dir, "server.js"), "--port", "0")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("ts-mls driver stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ts-mls driver: %w", err)
	}
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				port <- p
			}
		}
		close(port)
	}()
	select {
	case p, ok := <-port:
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			return nil, errors.New("ts-mls driver exited before listening")
		}
		return &TSMLS{Addr: "127.0.0.1:" + p, cmd: cmd}, nil
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	cmd.Process.Kill()
	cmd.Wait()
	return nil, errors.New("ts-mls driver did not start listening within 30s")
}

// Stop ends the driver process.
func (t *TSMLS) Stop() {
	t.cmd.Process.Kill()
	t.cmd.Wait()
}
