package groups

import "testing"

// TestWelcomeRecipients: a Welcome request carries at most
// maxWelcomeRecipients devices and about maxWelcomeRequest bytes, and
// always at least one device, however large the Welcome.
func TestWelcomeRecipients(t *testing.T) {
	for _, tt := range []struct{ size, want int }{
		{0, maxWelcomeRecipients},
		{600, maxWelcomeRecipients},                // offloaded: a file object
		{48 << 10, maxWelcomeRequest / (48 << 10)}, // inline, at the default threshold
		{maxWelcomeRequest, 1},
		{4 * maxWelcomeRequest, 1},
	} {
		if got := welcomeRecipients(tt.size); got != tt.want {
			t.Errorf("welcomeRecipients(%d) = %d, want %d", tt.size, got, tt.want)
		}
	}
}
