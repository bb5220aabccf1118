package runner

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/mls-appservice/mls-appservice/interop/client"
	"github.com/mls-appservice/mls-appservice/interop/mlsclientpb"
)

// interopSuites are the cipher suites the interop tests cover.
var interopSuites = []uint16{1, 2, 3}

// startOurs serves our MLSClient in-process on a loopback port and dials
// it.
func startOurs(t *testing.T) *Client {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	mlsclientpb.RegisterMLSClientServer(srv, client.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	c, err := Dial(context.Background(), lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// runSuites runs the scenarios for every interop suite concurrently (the
// servers are independent per session) and returns the results in suite
// order.
func runSuites(t *testing.T, a, b *Client) []Result {
	t.Helper()
	results := make([]Result, len(interopSuites))
	errs := make([]error, len(interopSuites))
	var wg sync.WaitGroup
	for i, suite := range interopSuites {
		wg.Go(func() {
			results[i], errs[i] = Run(context.Background(), a, b, suite, Scenarios)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return results
}

// TestOursAgainstOurs runs every scenario between two of our servers:
// each must pass, with both handshake wire formats.
func TestOursAgainstOurs(t *testing.T) {
	a, b := startOurs(t), startOurs(t)
	for _, res := range runSuites(t, a, b) {
		fmt.Println(res.Line(client.Name))
		for _, o := range res.Outcomes {
			if !o.Passed() {
				t.Errorf("suite %d: %v", res.Suite, o)
			}
		}
	}
}

// TestOursAgainstTSMLS runs every scenario between our server and ts-mls
// 1.6.4, in both role assignments. Scenarios ts-mls cannot take part in
// count in the total but not as passed; every other one must pass.
func TestOursAgainstTSMLS(t *testing.T) {
	d, err := StartTSMLS(context.Background(), "../tsmls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	ts, err := Dial(context.Background(), d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ts.Close() })
	ours := startOurs(t)
	for _, res := range runSuites(t, ours, ts) {
		fmt.Println(res.Line("ts-mls"))
		for _, o := range res.Outcomes {
			switch {
			case o.Passed():
			case o.Unsupported() && tsmlsUnsupported[o.Scenario] != "":
				t.Logf("unsupported by ts-mls: %v", o)
			default:
				t.Errorf("suite %d: %v", res.Suite, o)
			}
		}
	}
}
