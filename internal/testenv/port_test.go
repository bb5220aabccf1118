package testenv

import "testing"

// TestFreePortNeverRepeats: ports handed out one after the other, each
// closed at once as a caller's would be until its server binds it, are
// all different, though the kernel may offer a port just closed again.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		port := FreePort(t)
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
}
