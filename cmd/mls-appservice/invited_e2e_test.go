package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/groups"
)

// TestInvitedDevicesFollow: the room's creator, on service P, invites
// three puppets of service S one at a time and adds each one's device as
// it invites it, before the puppet has joined (S's autojoin is off). Each
// of S's devices joins its own epoch by Welcome, and none of the commits
// between those epochs reaches S: a homeserver shows a user who is only
// invited none of the room's events. Once a puppet joins, S must fetch
// those commits and bring every device into the latest epoch, long before
// groups.wait (10 minutes here) would remove the devices left behind as
// orphans. Before S did (groups.followBehind), two of the three devices
// stayed without their keys until then; in the load run, 8 of every 9.
func TestInvitedDevicesFollow(t *testing.T) {
	t.Run("every Welcome", func(t *testing.T) { invitedDevicesFollow(t, false) })
	t.Run("a Welcome lost", func(t *testing.T) { invitedDevicesFollow(t, true) })
}

// invitedDevicesFollow runs TestInvitedDevicesFollow. With lose, S is
// down while P adds the second puppet's device, and Synapse drops that
// Welcome (it does not keep to-device messages for an application
// service that is down): the first device must still follow, through the
// commit the lost Welcome was for, and only the second be left an orphan,
// which groups.wait (1 minute here) later removes and P adds again. Before
// followBehind reached past such a cut, the first device was removed too.
func invitedDevicesFollow(t *testing.T, lose bool) {
	wait := "10m"
	if lose {
		wait = "1m"
	}
	_, svcs := startServices(t,
		serviceOptions{name: "fwi", groups: map[string]any{"autojoin": "off", "wait": wait}},
		serviceOptions{name: "fwp"})
	S, P := svcs[0], svcs[1]
	ctx := context.Background()
	w := &e2eWorld{t: t, puppets: map[id.UserID]*testService{}, devices: map[id.UserID][]id.DeviceID{}}
	ours := createPuppets(t, w, S, "fwi", 3)
	peer := createPuppets(t, w, P, "fwp", 1)[0]
	room, err := P.c.groups.CreateRoom(ctx, peer, "", groups.CreateRoomOptions{Name: "invited devices follow"})
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range ours {
		down := lose && i == 1
		if down {
			S.proc.kill(t)
		}
		if err := P.c.groups.Invite(ctx, peer, room, u); err != nil {
			t.Fatalf("invite %s: %v", u, err)
		}
		// One commit for each invitee: the next invitation waits until
		// P's group holds this one's device, and its Welcome is sent.
		until(t, 2*time.Minute, fmt.Sprintf("P adds %s's device", u), func(ctx context.Context) (bool, error) {
			info, err := P.c.groups.Room(ctx, room)
			if err != nil || len(info.Devices) != i+2 {
				return false, nil
			}
			var unsent int
			err = P.db.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE kind = 'to_device' AND sent_at IS NULL`).Scan(&unsent)
			return err == nil && unsent == 0, err
		})
		if down {
			S.proc = startServiceFor(t, S.owner, S.cfgPath)
		}
	}
	joinedByWelcome := len(ours)
	if lose {
		joinedByWelcome = 1 // S's counters start again with its process
	}
	until(t, 2*time.Minute, "S's devices joined by Welcome", func(ctx context.Context) (bool, error) {
		return scrape(S)["mlsas_dmls_welcomes_joined_total"] >= float64(joinedByWelcome), nil
	})
	before, err := S.c.groups.Room(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	if len(before.Ours) == len(ours) {
		t.Fatalf("every device of S held the latest epoch before any puppet joined (%v): the test no longer makes the case", before.Ours)
	}
	t.Logf("before the joins S holds epoch %d with %v only", before.Epoch, before.Ours)
	if lose {
		var got int
		if err := S.db.QueryRow(ctx, `SELECT count(*) FROM inbound_event WHERE kind = 'to_device' AND to_user_id = $1`,
			string(ours[1])).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != 0 {
			t.Fatalf("S received %d to-device messages for %s, sent while it was down: Synapse kept them, and the test no longer loses a Welcome", got, ours[1])
		}
	}

	start := time.Now()
	for _, u := range ours {
		if err := S.c.groups.Join(ctx, u, room, nil); err != nil {
			t.Fatalf("join %s: %v", u, err)
		}
	}
	if lose {
		// The first and third devices hold the latest epoch before
		// groups.wait is up; the second is the only orphan.
		until(t, 40*time.Second, "S's first and third devices in the latest epoch", func(ctx context.Context) (bool, error) {
			si, err := S.c.groups.Room(ctx, room)
			if err != nil {
				return false, nil
			}
			return len(si.Ours) == 2 && !slices.ContainsFunc(si.Ours, func(d string) bool { return strings.HasPrefix(d, string(ours[1])+"|") }), nil
		})
		t.Logf("S's devices held the latest epoch but the lost Welcome's %s after the joins", time.Since(start).Round(time.Millisecond))
	}
	until(t, 3*time.Minute, "every device of S in P's epoch with its keys", func(ctx context.Context) (bool, error) {
		si, err := S.c.groups.Room(ctx, room)
		if err != nil {
			return false, nil
		}
		pi, err := P.c.groups.Room(ctx, room)
		return err == nil && si.Converged && si.EpochID == pi.EpochID && len(si.Ours) == len(ours), nil
	})
	t.Logf("every device of S held the latest epoch %s after the joins", time.Since(start).Round(time.Millisecond))
	wantRemoved := 0.0
	if lose {
		wantRemoved = 1
	}
	if n := scrape(S)["mlsas_dmls_orphans_removed_total"]; n != wantRemoved {
		t.Errorf("S removed %v orphans, want %v", n, wantRemoved)
	}

	if _, err := P.c.groups.Send(ctx, peer, "", room, "m.room.message",
		json.RawMessage(`{"msgtype":"m.text","body":"followed"}`), ""); err != nil {
		t.Fatal(err)
	}
	for _, u := range ours {
		until(t, time.Minute, fmt.Sprintf("%s reads P's message", u), func(ctx context.Context) (bool, error) {
			log, err := S.c.groups.Log(ctx, u, 0, 100)
			if err != nil {
				return false, err
			}
			for _, d := range log {
				if d.Kind == groups.KindMessage && strings.Contains(string(d.Content), `"followed"`) {
					return true, nil
				}
			}
			return false, nil
		})
	}
}
