package groups

import (
	"encoding/json"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// TestSettledEpochsDropped: an epoch goes, its rows and secrets with it,
// once every member moved on from it, long before groups.max_epochs would
// take it. Our alice only listens: bob's commit above the epoch she
// joined in moves both on (she holds his epoch and can never go back), so
// it goes at once. cat, a remote member who never sends, then keeps
// every later epoch: nothing shows that she moved on.
func TestSettledEpochsDropped(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	alice := h.puppet("alice", "ALICE1")
	ours := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
	bob := h.newRemoteRoom("bob")
	cat, catKP := bob.remoteMember("cat")
	joined := bob.joinOurs(ours)
	rows := func(table string, e epochs.ID) int {
		return h.count(`SELECT count(*) FROM `+table+` WHERE room_id = $1 AND epoch_id = $2`, bob.room, []byte(e))
	}
	if rows("dmls_epoch", joined) != 1 || rows("dmls_epoch_private", joined) != 1 {
		t.Fatal("the epoch alice joined in is not stored")
	}
	dropped := counter(h.metrics.EpochsDropped)

	out, commit, _, _ := bob.commit(view(bob.dev, ours, cat), map[epochs.Device]*message.KeyPackage{cat: catKP})
	h.send([]json.RawMessage{commit}, nil)
	if n, p := rows("dmls_epoch", joined), rows("dmls_epoch_private", joined); n != 0 || p != 0 {
		t.Fatalf("the settled epoch alice joined in keeps %d rows and %d private rows", n, p)
	}
	if got := counter(h.metrics.EpochsDropped) - dropped; got != 1 {
		t.Fatalf("%v epochs counted as dropped, want 1", got)
	}

	withCat := out.Commit.Epoch
	for range 2 {
		_, commit, _, _ := bob.commit(view(bob.dev, ours, cat), nil)
		h.send([]json.RawMessage{commit}, nil)
	}
	if n := rows("dmls_epoch", withCat); n != 1 {
		t.Fatal("an epoch cat has not moved on from was dropped")
	}
	if n := h.count(`SELECT count(*) FROM dmls_epoch WHERE room_id = $1`, bob.room); n != 3 {
		t.Fatalf("%d epochs stored, want the 3 cat is in", n)
	}
}

// TestConfirmedOwnCommitDropsItsBase: in a room of our own devices, every
// commit is ours. bob leaves and one of our devices commits his removal;
// the epoch before it stays while the commit could still be withdrawn
// (its event has not come back), and goes when the echo comes back and
// the room accepts it: bob is out of every head, the committer made the
// commit, and our other device holds its epoch for good. The commit's
// message, kept with its epoch for devices of ours that enter the base
// later, goes with the base.
func TestConfirmedOwnCommitDropsItsBase(t *testing.T) {
	// Inline, so that the echo needs no media repository.
	h := newHarness(t, harnessOptions{OffloadThreshold: 48 << 10})
	alice, carol := h.puppet("alice", "ALICE1"), h.puppet("carol", "CAROL1")
	bob := h.newRemoteRoom("bob")
	joined := bob.joinOurs(epochs.Device{UserID: string(alice), DeviceID: "ALICE1"},
		epochs.Device{UserID: string(carol), DeviceID: "CAROL1"})
	stored := func() int {
		return h.count(`SELECT count(*) FROM dmls_epoch WHERE room_id = $1 AND epoch_id = $2`, bob.room, []byte(joined))
	}
	leave, _ := h.member(bob.room, bob.dev.UserID, bob.dev.UserID, "leave")
	h.send([]json.RawMessage{leave}, nil)
	var txn string
	if err := h.db.QueryRow(h.ctx, `SELECT txn_id FROM outbox WHERE kind = 'room_event' AND room_id = $1 AND hook = $2`,
		bob.room, HookName).Scan(&txn); err != nil {
		t.Fatalf("our commit of bob's removal: %v", err)
	}
	content := h.outgoing(txn)
	e, err := ParseEncrypted(content)
	if err != nil || e.Commit == nil || e.Epoch != joined {
		t.Fatalf("our commit: %+v (%v)", e, err)
	}
	if stored() != 1 {
		t.Fatal("the epoch went before our commit on it came back")
	}
	commitKept := func() int {
		return h.count(`SELECT count(*) FROM dmls_epoch WHERE room_id = $1 AND epoch_id = $2 AND commit IS NOT NULL`,
			bob.room, []byte(e.Commit.Next))
	}
	if commitKept() != 1 {
		t.Fatal("our commit is not stored with its epoch while the base is held")
	}
	dropped := counter(h.metrics.EpochsDropped)

	echo, _ := h.event(bob.room, e.Commit.Sender.UserID, EncryptedType, nil, json.RawMessage(content))
	h.send([]json.RawMessage{echo}, nil)
	if stored() != 0 {
		t.Fatal("the epoch stays after our commit on it came back and was accepted")
	}
	if got := counter(h.metrics.EpochsDropped) - dropped; got != 1 {
		t.Fatalf("%v epochs counted as dropped, want 1", got)
	}
	if commitKept() != 0 {
		t.Fatal("the commit is kept though the epoch it leads from went")
	}
	if got := counter(h.metrics.OwnCommitsWithdrawn); got != 0 {
		t.Fatalf("%v own commits withdrawn", got)
	}
	r := h.loadRoom(bob.room)
	if n, ok := r.node(e.Commit.Next); !ok || !n.Echoed {
		t.Fatalf("our commit's epoch is not stored as confirmed (%v)", ok)
	}
}

// TestSettledEpochLingersForLateMessages: after a partition a homeserver
// may deliver a member's commit before the messages that member sent in
// the commit's base: they precede it in the room, but came in a hole
// that is paged back later. The commit settles the base at once (bob
// made the epoch above it, and alice holds that epoch for good), so
// without a linger the late message finds its epoch dropped
// (undecryptable, epoch_dropped: two federated services lost such
// messages in CI). With groups.epoch_linger the base stays that long and
// the message decrypts; if the room then falls quiet, its retention
// timer drops the epoch when the linger ends (not before).
func TestSettledEpochLingersForLateMessages(t *testing.T) {
	for _, linger := range []time.Duration{0, time.Minute} {
		t.Run(linger.String(), func(t *testing.T) {
			h := newHarness(t, harnessOptions{Policy: epochs.Policy{Linger: linger}})
			alice := h.puppet("alice", "ALICE1")
			ours := epochs.Device{UserID: string(alice), DeviceID: "ALICE1"}
			bob := h.newRemoteRoom("bob")
			joined := bob.joinOurs(ours)
			stored := func() int {
				return h.count(`SELECT count(*) FROM dmls_epoch WHERE room_id = $1 AND epoch_id = $2`, bob.room, []byte(joined))
			}
			delivered := func(kind Kind) int { return h.logged(alice, kind) }
			late, _ := bob.message("m.room.message", map[string]string{"body": "sent before the commit"})
			_, commit, _, _ := bob.commit(view(bob.dev, ours), nil)
			first, _ := bob.message("m.room.message", map[string]string{"body": "first in the new epoch"})
			h.send([]json.RawMessage{commit, first}, nil)
			h.send([]json.RawMessage{late}, nil)
			if linger == 0 {
				// Dropped and forgotten: the message waits for an epoch
				// that never comes.
				if stored() != 0 || delivered(KindMessage) != 1 {
					t.Fatalf("no linger: epoch stored %d, %d messages delivered; want the epoch gone and only the later message",
						stored(), delivered(KindMessage))
				}
				return
			}
			if stored() != 1 {
				t.Fatal("the settled epoch went before its linger passed")
			}
			if delivered(KindMessage) != 2 || delivered(KindUndecryptable) != 0 {
				t.Fatalf("%d messages delivered and %d undecryptable, want both delivered", delivered(KindMessage), delivered(KindUndecryptable))
			}
			// The room falls quiet: its retention timer drops the epoch
			// when the linger ends (counted from bob's first message in
			// the new epoch, the last move), not the next event.
			var due time.Time
			if err := h.db.QueryRow(h.ctx, `SELECT due_at FROM timer WHERE kind = $1 AND key = $2`, timerRetain, bob.room).
				Scan(&due); err != nil {
				t.Fatalf("no retention timer for the lingering epoch: %v", err)
			}
			if wait := due.Sub(h.s.now()); wait <= 0 || wait > linger {
				t.Fatalf("retention timer due in %v, want within the linger of %v", wait, linger)
			}
			h.runRetainTimer(bob.room)
			if stored() != 1 {
				t.Fatal("the retention timer, run early, dropped the epoch")
			}
			h.advance(linger)
			h.runRetainTimer(bob.room)
			if stored() != 0 {
				t.Fatal("the settled epoch stays after its linger passed")
			}
			if n := h.count(`SELECT count(*) FROM timer WHERE kind = $1 AND key = $2`, timerRetain, bob.room); n != 0 {
				t.Fatalf("%d retention timers left with nothing to wait for", n)
			}
			next, _ := bob.message("m.room.message", map[string]string{"body": "after the linger"})
			h.send([]json.RawMessage{next}, nil)
			if delivered(KindMessage) != 3 {
				t.Fatalf("%d messages delivered, want 3", delivered(KindMessage))
			}
		})
	}
}

// runRetainTimer runs the room's retention timer now, as the timer
// runner would (the row goes with it unless the run set it again).
func (h *harness) runRetainTimer(room id.RoomID) {
	h.t.Helper()
	h.inWork(func(w *inbound.Work) error {
		timer := database.Timer{Kind: timerRetain, Key: string(room), Queue: roomQueue(room)}
		if err := w.Q.QueryRow(h.ctx, `SELECT due_at FROM timer WHERE kind = $1 AND key = $2`, timerRetain, room).Scan(&timer.DueAt); err != nil {
			return err
		}
		next, err := (retainTimer{h.s}).Timer(h.ctx, w, timer)
		if err != nil {
			return err
		}
		return database.FinishTimer(h.ctx, w.Q, &timer, next)
	})
}
