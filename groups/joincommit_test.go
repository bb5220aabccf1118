package groups

import (
	"testing"
	"time"
)

// Regression (fixed; found by this test): the
// commit that adds our device reaches us before its Welcome (the
// homeserver sends the room event, then the to-device message), while we
// hold no epoch: applyCommit makes it wait for its base. The Welcome then
// joins the commit's own epoch, and replayWaiting replays only events
// waiting for that epoch as their base, so the joining commit stays in
// dmls_waiting until the wait ends, when waitTimer counts it as a
// rejected commit (mlsas_dmls_commits_rejected_total{reason=
// "base_never_arrived"}): every join by Welcome counts one rejection.
func TestJoiningCommitIsNotRejected(t *testing.T) {
	h, bob, _, _ := badInputRoom(t)
	if n := h.count(`SELECT count(*) FROM dmls_waiting WHERE room_id = $1`, bob.room); n != 0 {
		t.Errorf("%d events wait after the join; the commit that made the joined epoch is among them", n)
	}
	h.advance(h.s.cfg.Wait + time.Second)
	h.runWaitTimer(bob)
	if got := counter(h.metrics.CommitsRejected.WithLabelValues("base_never_arrived")); got != 0 {
		t.Errorf("the commit that added our device is counted as rejected (%v)", got)
	}
}
