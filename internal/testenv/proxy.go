package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// dialTimeout bounds connecting to a homeserver's own listener; on
// loopback a stopped homeserver refuses at once.
const dialTimeout = 5 * time.Second

// linkSwitch is a TCP proxy in front of one homeserver's federation
// listener that the test opens and closes. It forwards bytes only (TLS
// passes through untouched), so it knows nothing of Matrix. While closed
// it accepts and resets every connection: peers see a reset at once
// instead of waiting for a timeout, and the port stays ours.
type linkSwitch struct {
	ln     net.Listener
	target string
	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutine

	mu    sync.Mutex
	open  bool
	conns map[net.Conn]struct{} // both ends of every forwarded connection
}

// newLinkSwitch listens on a free loopback port and forwards to target.
func newLinkSwitch(target string) (*linkSwitch, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("federation proxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &linkSwitch{ln: ln, target: target, ctx: ctx, cancel: cancel, open: true, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *linkSwitch) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *linkSwitch) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // e.g. out of descriptors: try again shortly
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *linkSwitch) handle(c net.Conn) {
	s.mu.Lock()
	open := s.open
	s.mu.Unlock()
	if !open {
		reset(c)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, dialTimeout)
	var d net.Dialer
	up, err := d.DialContext(ctx, "tcp", s.target)
	cancel()
	if err != nil { // the homeserver is stopped: refuse as it would
		reset(c)
		return
	}
	if !s.track(c, up) { // partitioned while we dialled
		reset(c)
		reset(up)
		return
	}
	defer s.untrack(c, up)
	done := make(chan struct{})
	go func() {
		forward(up, c)
		close(done)
	}()
	forward(c, up)
	<-done
	c.Close()
	up.Close()
}

// forward copies src to dst and passes on src's end: a clean end as a
// half-close, an error (a reset, or the switch closing) by resetting both.
func forward(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		reset(dst)
		reset(src)
		return
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// reset closes c with a TCP reset rather than an orderly close, as a
// broken link looks to the peer.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (s *linkSwitch) track(conns ...net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open || s.ctx.Err() != nil {
		return false
	}
	for _, c := range conns {
		s.conns[c] = struct{}{}
	}
	return true
}

func (s *linkSwitch) untrack(conns ...net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range conns {
		delete(s.conns, c)
	}
}

// setOpen opens or closes the switch; closing resets every connection.
func (s *linkSwitch) setOpen(open bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open = open
	if !open {
		for c := range s.conns {
			reset(c)
		}
	}
}

// close stops the proxy and waits for its goroutines.
func (s *linkSwitch) close() {
	s.cancel()
	_ = s.ln.Close()
	s.setOpen(false)
	s.wg.Wait()
}
