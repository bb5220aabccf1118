package groups

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// TestLateWelcomesFollow: bob adds our carol, then our dave, in two
// commits; both commit events reach us at once, the Welcomes only after
// groups.wait (a backlogged homeserver: at 1,000 puppets joining 100
// rooms the peer's Welcomes came minutes after its commits). Carol joins
// the first epoch from her Welcome, and must follow into the second by
// its commit; when the commit had stopped waiting for its base at
// groups.wait, she stayed behind, the group held her without her keys
// there, and the room removed her as an orphan (8 of every room's 9
// devices in the load run).
func TestLateWelcomesFollow(t *testing.T) {
	for _, order := range []string{"commits first, Welcomes after the wait", "Welcomes first"} {
		t.Run(order, func(t *testing.T) { lateWelcomes(t, order == "Welcomes first") })
	}
}

func lateWelcomes(t *testing.T, welcomesFirst bool) {
	h := newHarness(t, harnessOptions{})
	bob := h.newRemoteRoom("bob")
	carol := h.puppet("carol", "CAROL1")
	dave := h.puppet("dave", "DAVE1")
	carolDev := epochs.Device{UserID: string(carol), DeviceID: "CAROL1"}
	daveDev := epochs.Device{UserID: string(dave), DeviceID: "DAVE1"}
	var members []json.RawMessage
	for _, u := range []string{string(carol), string(dave)} {
		inv, _ := h.member(bob.room, bob.dev.UserID, u, "invite")
		join, _ := h.member(bob.room, u, u, "join")
		members = append(members, inv, join)
	}
	h.send(members, nil)
	h.seedDevices(bob.dev.UserID, bob.dev.DeviceID)
	_, ev1, _, wel1 := bob.commit(view(bob.dev, carolDev),
		map[epochs.Device]*message.KeyPackage{carolDev: h.keyPackage(carolDev)})
	out2, ev2, _, wel2 := bob.commit(view(bob.dev, carolDev, daveDev),
		map[epochs.Device]*message.KeyPackage{daveDev: h.keyPackage(daveDev)})
	welcomes := func() {
		h.send(nil, []json.RawMessage{toDevice(bob.dev.UserID, carolDev, wel1)})
		h.send(nil, []json.RawMessage{toDevice(bob.dev.UserID, daveDev, wel2)})
	}
	if welcomesFirst {
		// Our service was behind on room events: both Welcomes are
		// processed before either commit event.
		welcomes()
		h.send([]json.RawMessage{ev1, ev2}, nil)
	} else {
		h.send([]json.RawMessage{ev1, ev2}, nil)
		h.advance(h.s.cfg.Wait + time.Second)
		h.runWaitTimer(bob)
		welcomes()
	}

	r := h.loadRoom(bob.room)
	holders := r.m.Holders(out2.Commit.Epoch)
	for _, d := range []epochs.Device{carolDev, daveDev} {
		if !slices.Contains(holders, d) {
			t.Errorf("%s does not hold the latest epoch (holders %v)", d, holders)
		}
	}
	if got := counter(h.metrics.CommitsRejected.WithLabelValues("base_never_arrived")); got != 0 {
		t.Errorf("%v commits dropped for a base that came late", got)
	}
}
