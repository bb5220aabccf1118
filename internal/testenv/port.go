package testenv

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
)

// FreePort returns a loopback TCP port that was free a moment ago, for a
// listener whose address must be known before it starts (an appservice's
// URL in its registration). The test fails if none can be found.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// handedOut holds every port freePort returned in this process. The
// kernel may give a port just closed to the next listener that asks for
// any, so two ports taken one after the other, a service's and then its
// homeserver's, could be the same, and the second to bind fails (CI saw a
// Synapse take the port picked for a service a moment before). Ports are
// the process's to share, hence one set for it.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePort returns a loopback TCP port that was free a moment ago and that
// this process has not handed out before. Another process may still take
// it before it is bound; start-up then fails with the address in use.
func freePort() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("find a free port: 100 ports in a row were handed out before")
}
