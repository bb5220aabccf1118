package appservice

import (
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/inbound"
)

// TestCountFilter: a device's counts are passed on when first seen, when
// they change and when the refresh is up, not when they repeat; a pass
// counts only once its split commits, and a reset forgets everything.
func TestCountFilter(t *testing.T) {
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	const refresh = time.Hour
	f := newCountFilter(func() time.Time { return now }, refresh)
	counts := func(user string, n int, fallback ...string) inbound.KeyCounts {
		k := inbound.KeyCounts{UserID: id.UserID(user), DeviceID: "D", OneTimeKeys: map[string]int{"alg": n}}
		if fallback != nil {
			k.HasFallback, k.UnusedFallback = true, fallback
		}
		return k
	}
	seq := int64(0)
	step := func(name string, in []inbound.KeyCounts, want []string, committed bool) {
		t.Helper()
		out, payloads := f.pass(in)
		var got []string
		for i, k := range out {
			got = append(got, string(k.UserID))
			if string(payloads[i]) != string(k.Encode()) {
				t.Errorf("%s: payload %s, want %s", name, payloads[i], k.Encode())
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: passed %v, want %v", name, got, want)
		} else {
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("%s: passed %v, want %v", name, got, want)
				}
			}
		}
		if !committed {
			f.discard()
			return
		}
		seq++
		if skipped := f.commit(seq); skipped != len(in)-len(out) {
			t.Errorf("%s: commit reports %d left out, want %d", name, skipped, len(in)-len(out))
		}
	}

	step("first seen", []inbound.KeyCounts{counts("@a:hs", 50), counts("@b:hs", 50, "alg")}, []string{"@a:hs", "@b:hs"}, true)
	step("repeated", []inbound.KeyCounts{counts("@a:hs", 50), counts("@b:hs", 50, "alg")}, nil, true)
	step("a count changes", []inbound.KeyCounts{counts("@a:hs", 49), counts("@b:hs", 50, "alg")}, []string{"@a:hs"}, true)
	step("the fallback key handed out", []inbound.KeyCounts{counts("@a:hs", 49), counts("@b:hs", 50, []string{}...)},
		[]string{"@b:hs"}, true)
	step("fallback types now absent", []inbound.KeyCounts{counts("@b:hs", 50)}, []string{"@b:hs"}, true)
	step("rolled back", []inbound.KeyCounts{counts("@a:hs", 48)}, []string{"@a:hs"}, false)
	step("after the rollback, again", []inbound.KeyCounts{counts("@a:hs", 48)}, []string{"@a:hs"}, true)
	step("repeated before the refresh", []inbound.KeyCounts{counts("@a:hs", 48)}, nil, true)
	now = now.Add(refresh * 3 / 2)
	step("the refresh is up", []inbound.KeyCounts{counts("@a:hs", 48), counts("@b:hs", 50)}, []string{"@a:hs", "@b:hs"}, true)
	if n := f.len(); n != 2 {
		t.Errorf("remembers %d devices, want 2", n)
	}
	if f.lastSplit() != seq {
		t.Errorf("last split %d, want %d", f.lastSplit(), seq)
	}
	f.reset()
	step("after a reset", []inbound.KeyCounts{counts("@a:hs", 48)}, []string{"@a:hs"}, true)

	// Devices not seen for a refresh are forgotten at the next commit
	// after it.
	now = now.Add(2 * refresh)
	step("another device, much later", []inbound.KeyCounts{counts("@c:hs", 1)}, []string{"@c:hs"}, true)
	if n := f.len(); n != 1 {
		t.Errorf("remembers %d devices after the others' refresh was long up, want 1", n)
	}
}
