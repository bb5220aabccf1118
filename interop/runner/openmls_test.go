package runner

import (
	"context"
	"fmt"
	"os"
	"testing"
)

// openmlsDriverEnv names the OpenMLS driver binary built by
// interop/openmls/build.sh; scripts/test sets it.
const openmlsDriverEnv = "MLSAS_OPENMLS_DRIVER"

// Scenarios OpenMLS 0.9.2 cannot take part in, with the reason
// (interop/openmls/README.md); every other scenario must pass.
var openmlsUnsupported = map[string]string{
	"reinit": "OpenMLS has no API for ReInit proposals or a group started with a reinit PSK",
	"branch": "OpenMLS has no API for a group started with a branch PSK",
}

// peer starts one MLSClient server for a test and says which scenarios it
// cannot take part in.
type peer struct {
	start       func(t *testing.T) *Client
	unsupported map[string]string
}

var (
	openmlsPeer = peer{start: startOpenMLS, unsupported: openmlsUnsupported}
	oursPeer    = peer{start: startOurs}
)

// openmlsPairs lists the implementations run against each other; Run
// plays every scenario with the roles both ways round, so one entry
// covers both directions. line formats the pair's summary line: OpenMLS
// against itself proves the driver (a harness line), our client against
// OpenMLS is the interop result.
var openmlsPairs = []struct {
	label string
	a, b  peer
	line  func(Result) string
}{
	{"openmls-self", openmlsPeer, openmlsPeer, func(r Result) string { return r.HarnessLine("openmls") }},
	{"ours-openmls", oursPeer, openmlsPeer, func(r Result) string { return r.Line("openmls") }},
}

func TestOpenMLSInterop(t *testing.T) {
	for _, pair := range openmlsPairs {
		t.Run(pair.label, func(t *testing.T) {
			a, b := pair.a.start(t), pair.b.start(t)
			for _, res := range runSuites(t, a, b) {
				fmt.Println(pair.line(res))
				for _, o := range res.Outcomes {
					switch {
					case o.Passed():
					case o.Unsupported() && (pair.a.unsupported[o.Scenario] != "" || pair.b.unsupported[o.Scenario] != ""):
						t.Logf("unsupported: %v", o)
					default:
						t.Errorf("suite %d: %v", res.Suite, o)
					}
				}
			}
		})
	}
}

// startOpenMLS starts the OpenMLS driver named by MLSAS_OPENMLS_DRIVER and
// connects to it. A missing binary fails the test: skipping would hide
// that the interop run did not happen.
func startOpenMLS(t *testing.T) *Client {
	t.Helper()
	bin := os.Getenv(openmlsDriverEnv)
	if bin == "" {
		t.Fatalf("%s is not set: build the driver with interop/openmls/build.sh and set %s to the path it prints", openmlsDriverEnv, openmlsDriverEnv)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v (build it with interop/openmls/build.sh)", openmlsDriverEnv, err)
	}
	return startDriverProcess(t, bin, "--port", "0")
}

// startDriverProcess runs an MLSClient server process, dials it, and
// stops it when the test ends.
func startDriverProcess(t *testing.T, bin string, args ...string) *Client {
	t.Helper()
	p, err := StartProcess(context.Background(), bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	c, err := Dial(context.Background(), p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
