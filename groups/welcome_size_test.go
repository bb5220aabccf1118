package groups

import (
	"encoding/json"
	"testing"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/group/grouptest"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// A Welcome carries the ratchet tree inline, about 365 bytes of base64
// per member, so from about 270 members on it cannot travel in an event
// (DESIGN 6, "Size"): our sender uploads it as an encrypted attachment
// and sends ciphertext_file instead (media.offload_threshold; TestOffload
// in cmd/mls-appservice runs that through Synapse). An inline Welcome
// above the inline bound, as another implementation might send, is
// refused as malformed and counted, and nothing else stops.
func TestOversizeInlineWelcomeRefused(t *testing.T) {
	const members = 300
	h := newHarness(t, harnessOptions{})
	g, err := grouptest.BuildWith(testSuite, members, true, grouptest.Options{Scheme: keyschedule.SchemeDMLS,
		Name: func(i int) string { return remoteMember(i).Identity() }})
	if err != nil {
		t.Fatal(err)
	}
	bobG, err := g.Member(0, h.s.groupConfig())
	if err != nil {
		t.Fatal(err)
	}
	bob := h.remoteRoom("!large:"+remoteDomain, remoteMember(0), bobG)
	h.joinRemotes(bob.room, 0, members)
	alice := h.puppet("alice", "ALICE1")
	dev := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	inv, _ := h.member(bob.room, bob.dev.UserID, dev.UserID, "invite")
	join, _ := h.member(bob.room, dev.UserID, dev.UserID, "join")
	h.send([]json.RawMessage{inv, join}, nil)
	room := epochs.Room{Members: map[string]epochs.MemberState{dev.UserID: epochs.Join},
		Devices: map[string][]string{dev.UserID: {dev.DeviceID}}}
	for i := range members {
		d := remoteMember(i)
		room.Members[d.UserID], room.Devices[d.UserID] = epochs.Join, []string{d.DeviceID}
	}
	out, ev, _, wel := bob.commit(room, map[epochs.Device]*message.KeyPackage{dev: h.keyPackage(dev)})
	t.Logf("Welcome of a %d-member room: %d bytes, %d of base64 (maxCiphertext %d)", members+1, len(out.Welcome),
		len(b64(out.Welcome)), maxCiphertext)
	h.send([]json.RawMessage{ev}, []json.RawMessage{toDevice(bob.dev.UserID, dev, wel)})
	if got := counter(h.metrics.MalformedEvents.WithLabelValues("welcome")); got != 1 {
		t.Errorf("%v Welcomes refused as malformed, want 1", got)
	}
	if got := counter(h.metrics.WelcomesJoined); got != 0 {
		t.Fatalf("%v Welcomes joined, want 0", got)
	}
}
