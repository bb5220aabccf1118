package groups

import (
	"fmt"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

// TestRoomTimes: a time is kept and read back; markUnlessWithin refuses
// within keep and takes the turn after; past roomTimesLimit rooms, a new
// room's mark forgets the times older than keep and keeps the recent ones.
func TestRoomTimes(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	rt := newRoomTimes(2 * time.Second)
	if _, ok := rt.last("!a:x"); ok {
		t.Fatal("a time for a room never marked")
	}
	if !rt.markUnlessWithin("!a:x", t0) {
		t.Fatal("first turn refused")
	}
	if rt.markUnlessWithin("!a:x", t0.Add(time.Second)) {
		t.Fatal("a second turn within keep")
	}
	if at, _ := rt.last("!a:x"); !at.Equal(t0) {
		t.Fatalf("a refused turn moved the time to %v", at)
	}
	if !rt.markUnlessWithin("!a:x", t0.Add(2*time.Second)) {
		t.Fatal("turn after keep refused")
	}

	rt = newRoomTimes(2 * time.Second)
	for i := range roomTimesLimit {
		at := t0 // old
		if i%2 == 0 {
			at = t0.Add(time.Minute) // recent at the time of the next mark
		}
		rt.mark(id.RoomID(fmt.Sprintf("!r%d:x", i)), at)
	}
	if n := len(rt.at); n != roomTimesLimit {
		t.Fatalf("%d rooms before the limit, want %d", n, roomTimesLimit)
	}
	rt.mark("!new:x", t0.Add(time.Minute+time.Second))
	if n, want := len(rt.at), roomTimesLimit/2+1; n != want {
		t.Fatalf("%d rooms after the limit, want %d (the recent half and the new one)", n, want)
	}
	if _, ok := rt.last("!r0:x"); !ok {
		t.Fatal("a recent room forgotten")
	}
	if _, ok := rt.last("!r1:x"); ok {
		t.Fatal("an old room kept")
	}
	rt.mark("!r0:x", t0.Add(2*time.Minute)) // a known room: nothing forgotten
	if n := len(rt.at); n != roomTimesLimit/2+1 {
		t.Fatalf("%d rooms after marking a known room", n)
	}
}
