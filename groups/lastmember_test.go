package groups

import (
	"encoding/json"
	"testing"
)

// TestLastMemberRemovesTheDeparted: when bob, the only other member,
// leaves, our device is the committer (the only joined device) and
// commits his removal at once: the commit is in the outbox and the
// room's base no longer holds bob's device.
func TestLastMemberRemovesTheDeparted(t *testing.T) {
	h, bob, _, dev := badInputRoom(t)
	leave, _ := h.member(bob.room, bob.dev.UserID, bob.dev.UserID, "leave")
	h.send([]json.RawMessage{leave}, nil)
	if got := counter(h.metrics.CommitsMade); got != 1 {
		t.Errorf("%v commits made, want 1", got)
	}
	if n := h.count(`SELECT count(*) FROM outbox WHERE kind = 'room_event' AND room_id = $1 AND hook = $2`, bob.room, HookName); n != 1 {
		t.Errorf("%d commits in the outbox", n)
	}
	r := h.loadRoom(bob.room)
	base, err := r.m.Base()
	if err != nil {
		t.Fatal(err)
	}
	if devs := r.m.Devices(base); len(devs) != 1 || devs[0] != dev {
		t.Errorf("group after bob left: %v", devs)
	}
}
