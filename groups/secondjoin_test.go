package groups

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// TestSecondDeviceJoins: our alice is in bob's room; bob's commit adds
// our carol. Whatever order the homeserver delivers the commit event and
// carol's Welcome in, both of our devices end in the new epoch: alice by
// the commit, carol by the Welcome. A device left behind here is one that
// a later commit of ours removes as an orphan, and that bob adds again:
// the two devices then take turns leaving each other behind (seen in the
// federated test).
func TestSecondDeviceJoins(t *testing.T) {
	for _, order := range []string{"commit first", "welcome first", "together"} {
		t.Run(order, func(t *testing.T) {
			h, bob, _, aliceDev := badInputRoom(t)
			carol := h.puppet("carol", "CAROL1")
			carolDev := epochs.Device{UserID: string(carol), DeviceID: "CAROL1"}
			inv, _ := h.member(bob.room, bob.dev.UserID, string(carol), "invite")
			join, _ := h.member(bob.room, string(carol), string(carol), "join")
			h.send([]json.RawMessage{inv, join}, nil)
			out, ev, eid, wel := bob.commit(view(bob.dev, aliceDev, carolDev),
				map[epochs.Device]*message.KeyPackage{carolDev: h.keyPackage(carolDev)})
			td := toDevice(bob.dev.UserID, carolDev, wel)
			switch order {
			case "commit first":
				h.send([]json.RawMessage{ev}, nil)
				h.send(nil, []json.RawMessage{td})
			case "welcome first":
				h.send(nil, []json.RawMessage{td})
				h.send([]json.RawMessage{ev}, nil)
			default:
				h.send([]json.RawMessage{ev}, []json.RawMessage{td})
			}
			r := h.loadRoom(bob.room)
			holders := r.m.Holders(out.Commit.Epoch)
			for _, d := range []epochs.Device{aliceDev, carolDev} {
				if !slices.Contains(holders, d) {
					t.Errorf("%s does not hold the new epoch (holders %v)", d, holders)
				}
			}
			// Alice is told of the commit whichever came first (carol's
			// join was once told to every joined puppet, and a log keeps
			// one mls_state entry an event); carol of the commit or of
			// her device's join, whichever came first.
			for puppet, want := range map[string]string{aliceDev.UserID: "commit", string(carol): "commit joined"} {
				d, err := h.s.Delivery(h.ctx, id.UserID(puppet), eid)
				if err != nil || d == nil || d.Kind != KindMLSState {
					t.Errorf("%s's log entry for the commit: %+v (%v), want an mls_state entry", puppet, d, err)
					continue
				}
				var c struct{ Change string }
				if err := json.Unmarshal(d.Content, &c); err != nil || c.Change == "" || !strings.Contains(want, c.Change) {
					t.Errorf("%s was told %s of the commit, want %q", puppet, d.Content, want)
				}
				told := 0
				for _, d := range h.fullLog(id.UserID(puppet), 10) {
					if d.EventID == eid {
						told++
					}
				}
				if told != 1 {
					t.Errorf("%s's log has %d entries for the commit, want 1", puppet, told)
				}
			}
		})
	}
}
