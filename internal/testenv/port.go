package testenv

import "testing"

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
