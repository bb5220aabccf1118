package main

import (
	"context"
	"testing"
	"time"
)

// TestSlowLinkSettles runs two services on one Synapse with every
// transaction reaching B two seconds late (a delay line in front of its
// appservice endpoint) and B set to commit 300 ms after a change it sees,
// far less than events take to reach it: B resolves each fork before A's
// resolution can arrive. Until the committer rule backed off by resolving
// rounds in a row (epochs, "Committer"), the two resolutions forked again
// for ever (CI saw a seven-device room reach epoch 100); now the group
// settles, and stays settled.
func TestSlowLinkSettles(t *testing.T) {
	const delay = 2 * time.Second
	_, svcs := startServices(t, serviceOptions{name: "mlsa"},
		serviceOptions{name: "mlsb", linkDelay: delay, groups: map[string]any{"commit_grace": "300ms", "commit_jitter": "0s"}})
	A, B := svcs[0], svcs[1]
	w := newE2EWorld(t, svcs)
	ctx := context.Background()

	a1, b1 := w.puppet(A, "a1", 1), w.puppet(B, "b1", 1)
	room := w.createRoom(A, "slow", a1, b1)

	// Both services invite at once: their commits fork the group, and
	// the forks' resolutions race.
	a2, b2 := w.puppet(A, "a2", 1), w.puppet(B, "b2", 1)
	w.inviteAtOnce(room, invitation{A, a1, a2}, invitation{B, b1, b2})
	start := time.Now()
	w.converged(room, 3*time.Minute)
	settled := time.Since(start)
	if t.Failed() {
		return
	}
	first, err := A.c.groups.Room(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	// Settled means no commit is still on its way: wait out a few round
	// trips through the delay line and look again.
	time.Sleep(4 * delay)
	w.converged(room, time.Second)
	last, err := A.c.groups.Room(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if last.EpochID != first.EpochID {
		t.Errorf("the group moved on from epoch %d to %d after it had settled", first.Epoch, last.Epoch)
	}
	t.Logf("settled in %s at epoch %d; %d commits; resolutions made or received by both: %d", settled.Round(100*time.Millisecond),
		last.Epoch, commitsMade(t, svcs), int(w.metric("mlsas_dmls_forks_resolved_total")))
}
