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

// Process is a running MLSClient server in a process of its own: the
// ts-mls driver (interop/tsmls/server.js) or the OpenMLS driver
// (interop/openmls).
type Process struct {
	Addr string
	cmd  *exec.Cmd
}

// TSMLS is a running ts-mls driver.
type TSMLS = Process

// StartTSMLS starts the ts-mls driver found in dir (the interop/tsmls
// directory) on a free loopback port and waits until it listens.
func StartTSMLS(ctx context.Context, dir string) (*TSMLS, error) {
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ts-mls")); err != nil {
		return nil, ErrNodeModulesMissing
	}
	return StartProcess(ctx, "node", filepath.Join(dir, "server.js"), "--port", "0")
}

// StartProcess runs an MLSClient server that prints "listening <port>" on
// stdout once it accepts connections on a loopback port, and waits (30
// seconds at most) until it does. Its stderr goes to ours.
func StartProcess(ctx context.Context, bin string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s stdout: %w", bin, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
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
	p := &Process{cmd: cmd}
	select {
	case port, ok := <-port:
		if ok {
			p.Addr = "127.0.0.1:" + port
			return p, nil
		}
		err = fmt.Errorf("%s exited before listening", bin)
	case <-time.After(30 * time.Second):
		err = fmt.Errorf("%s did not start listening within 30s", bin)
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.Stop()
	return nil, err
}

// Stop ends the process.
func (p *Process) Stop() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}
