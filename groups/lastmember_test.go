package groups

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/mls/message"
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

// TestBurstIsOneCommit: bob, cat and dan leave in one burst (the events
// are queued together) while our device is the only one left to commit:
// it makes one commit that removes all three, not one per departure.
func TestBurstIsOneCommit(t *testing.T) {
	h, bob, others, dev := departuresRoom(t)
	made := counter(h.metrics.CommitsMade)
	var events []json.RawMessage
	for _, d := range append([]epochs.Device{bob.dev}, others...) {
		leave, _ := h.member(bob.room, d.UserID, d.UserID, "leave")
		events = append(events, leave)
	}
	h.send(events, nil)
	if got := counter(h.metrics.CommitsMade) - made; got != 1 {
		t.Errorf("%v commits for three departures queued together, want 1", got)
	}
	r := h.loadRoom(bob.room)
	if devs := r.m.Devices(mustBase(t, r)); len(devs) != 1 || devs[0] != dev {
		t.Errorf("group after the departures: %v", devs)
	}
}

// TestReconcilesCoalesce: the room's queue holds bob's and cat's
// departures, a reconcile item, dan's departure and another reconcile
// item (changes that kept arriving while earlier ones were applied).
// The first reconcile, moments after the room was reconciled, leaves its
// work to the second: one commit removes all three, where each reconcile
// item made its own.
func TestReconcilesCoalesce(t *testing.T) {
	h, bob, others, dev := departuresRoom(t)
	made, coalesced := counter(h.metrics.CommitsMade), counter(h.metrics.ReconcilesCoalesced)
	leave := func(d epochs.Device) database.Item {
		raw, eid := h.member(bob.room, d.UserID, d.UserID, "leave")
		return database.Item{Queue: roomQueue(bob.room), Kind: inbound.KindRoomEvent, RoomID: string(bob.room),
			EventID: string(eid), Payload: raw}
	}
	reconcile := database.Item{Queue: roomQueue(bob.room), Kind: kindReconcile, RoomID: string(bob.room), Payload: []byte{}}
	err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
		p := database.NewProducer(tx)
		for _, it := range []database.Item{leave(bob.dev), leave(others[0]), reconcile, leave(others[1]), reconcile} {
			if _, err := p.AddItem(h.ctx, it); err != nil {
				return err
			}
		}
		return p.Flush(h.ctx)
	})
	if err != nil {
		t.Fatal(err)
	}
	h.drain()
	if got := counter(h.metrics.CommitsMade) - made; got != 1 {
		t.Errorf("%v commits for three departures with two reconcile items queued, want 1", got)
	}
	if got := counter(h.metrics.ReconcilesCoalesced) - coalesced; got != 1 {
		t.Errorf("%v reconcile items coalesced, want 1", got)
	}
	r := h.loadRoom(bob.room)
	if devs := r.m.Devices(mustBase(t, r)); len(devs) != 1 || devs[0] != dev {
		t.Errorf("group after the departures: %v", devs)
	}
}

// departuresRoom makes bob's room with cat and dan, all remote, and our
// alice's device, in one epoch that holds all four devices.
func departuresRoom(t *testing.T) (*harness, *remote, []epochs.Device, epochs.Device) {
	t.Helper()
	h := newHarness(t, harnessOptions{})
	bob := h.newRemoteRoom("bob")
	others := []epochs.Device{{UserID: "@cat:" + remoteDomain, DeviceID: "CATDEV"}, {UserID: "@dan:" + remoteDomain, DeviceID: "DANDEV"}}
	var events []json.RawMessage
	for _, d := range others {
		inv, _ := h.member(bob.room, bob.dev.UserID, d.UserID, "invite")
		join, _ := h.member(bob.room, d.UserID, d.UserID, "join")
		events = append(events, inv, join)
	}
	h.send(events, nil)
	kps := map[epochs.Device]*message.KeyPackage{}
	for _, d := range others {
		h.seedDevices(d.UserID, d.DeviceID)
		kps[d] = newKeyPackage(t, d)
	}
	alice := h.puppet("alice", "ALICE1")
	dev := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	bob.joinOurs(dev)
	_, ev, _, _ := bob.commit(view(append([]epochs.Device{bob.dev, dev}, others...)...), kps)
	h.send([]json.RawMessage{ev}, nil)
	if r := h.loadRoom(bob.room); len(r.m.Devices(mustBase(t, r))) != 4 {
		t.Fatalf("bob's commit did not add cat and dan: %v", r.m.Devices(mustBase(t, r)))
	}
	return h, bob, others, dev
}

func mustBase(t *testing.T, r *room) epochs.ID {
	t.Helper()
	base, err := r.m.Base()
	if err != nil {
		t.Fatal(err)
	}
	return base
}

// TestDeviceListChangesShareAWaitingReconcile: changes of a member's
// device list made while the room's reconcile item still waits, with no
// worker on the room's queue, queue no more items (publishing 10,000 of
// our devices queued 9,700 in one room); one made while a worker holds
// the room's queue queues its own, since the item being applied may have
// read the list before the change. The waiting item then reconciles the
// room.
func TestDeviceListChangesShareAWaitingReconcile(t *testing.T) {
	h, bob, others, _ := departuresRoom(t)
	cat := id.UserID(others[0].UserID)
	queued := func() int {
		return h.count(`SELECT count(*) FROM work_item WHERE queue = $1 AND kind = $2 AND NOT parked`, roomQueue(bob.room), kindReconcile)
	}
	change := func() {
		t.Helper()
		err := h.db.InTx(h.ctx, func(tx pgx.Tx) error {
			p := database.NewProducer(tx)
			if err := h.s.devicesChanged(h.ctx, tx, p, cat); err != nil {
				return err
			}
			return p.Flush(h.ctx)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The harness's worker runs only when drained, so the items wait.
	for range 3 {
		change()
	}
	if n := queued(); n != 1 {
		t.Fatalf("%d reconcile items after three changes of one list, want 1", n)
	}
	// A worker applying the room's items holds its queue's lock.
	err := h.db.InTx(h.ctx, func(worker pgx.Tx) error {
		got, err := database.LockQueue(h.ctx, worker, roomQueue(bob.room), database.Inbound)
		if err != nil || !got {
			return fmt.Errorf("lock the room's queue: %v %w", got, err)
		}
		change()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := queued(); n != 2 {
		t.Fatalf("%d reconcile items after a change made while a worker held the room, want 2", n)
	}
	// The list, as the homeserver would give it again.
	h.seedDevices(string(cat), others[0].DeviceID)
	h.drain()
	if n := queued(); n != 0 {
		t.Fatalf("%d reconcile items left", n)
	}
}
