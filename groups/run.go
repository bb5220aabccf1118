package groups

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// A run of a room's events (inbound.RoomRunHandler) is the common case
// of a busy room: application messages, one after another, in an epoch
// we hold. Applied one by one, each pays its own savepoint, reads the room,
// its epoch, our joined puppets and our sent messages, writes the secret
// tree back and delivers: about ten round trips a message. A run pays
// them once for all its messages.
//
// The run takes the fast path only: every encrypted event of it is a
// message that decrypts at once (or is the echo of one of ours), names its
// room, comes from its MLS sender, skips no generation, is new to every
// puppet and is signed by its sender. The signatures are verified together
// once every message decrypted (epochs.VerifyOpened; in the Ed25519 suites
// for half the cost of one by one, a quarter when one sender sent the
// run, since a batch gathers a key's terms). Decrypting ahead of
// them advances the epochs' secret trees, which is safe because a run that
// fails is thrown away with the room state it loaded. Anything else (a
// commit, an epoch we lack, a late remote event, a replay, a refusal or a
// bad signature) declines the whole run with inbound.ErrNoRun before
// anything is logged or counted, and the worker applies its events one by
// one, where each case has its handling. Membership changes never enter a
// run (Runnable), so the puppets joined are the same for all its messages.

// Runnable lets into a run every event but those that change the room's
// membership or start it.
func (h roomHandler) Runnable(ev inbound.RoomEvent) bool {
	return ev.Type != "m.room.member" && ev.Type != "m.room.create"
}

// RoomEvents applies a run of a room's events.
func (h roomHandler) RoomEvents(ctx context.Context, w *inbound.Work, items []database.Item, evs []inbound.RoomEvent) error {
	return h.s.messageRun(ctx, w, items, evs)
}

// runMessage is one message of a run.
type runMessage struct {
	ev     inbound.RoomEvent
	e      *Encrypted
	digest [sha256.Size]byte
}

func (s *Service) messageRun(ctx context.Context, w *inbound.Work, items []database.Item, evs []inbound.RoomEvent) error {
	var msgs []runMessage
	for i, ev := range evs {
		if ev.Type != EncryptedType {
			continue // no business of ours, as for RoomEvent
		}
		if ev.RoomID != evs[0].RoomID {
			return fmt.Errorf("%w: a run of events of %s and %s", inbound.ErrNoRun, evs[0].RoomID, ev.RoomID)
		}
		e, err := ParseEncrypted(ev.Content)
		switch {
		case err != nil || !s.supported(e.Algorithm):
			return fmt.Errorf("%w: %s is malformed", inbound.ErrNoRun, ev.EventID)
		case e.Commit != nil:
			return fmt.Errorf("%w: %s is a commit", inbound.ErrNoRun, ev.EventID)
		case s.cameLate(ev, items[i].CreatedAt):
			return fmt.Errorf("%w: %s came late", inbound.ErrNoRun, ev.EventID)
		}
		msgs = append(msgs, runMessage{ev: ev, e: e, digest: sha256.Sum256(e.Ciphertext)})
	}
	if len(msgs) == 0 {
		return nil
	}
	start := time.Now()
	r, err := s.loadRoom(ctx, w.Q, msgs[0].ev.RoomID)
	if err != nil {
		return err
	}
	if r == nil || !r.held() {
		return fmt.Errorf("%w: no epoch of the room is held", inbound.ErrNoRun)
	}
	digests := make([][]byte, len(msgs))
	for i := range msgs {
		digests[i] = msgs[i].digest[:]
	}
	to, own, err := s.messageContext(ctx, w.Q, r.id, digests)
	if err != nil {
		return err
	}
	ds := make([]Delivered, 0, len(msgs))
	decrypted := 0
	// The senders' signatures are verified together once every message
	// decrypted (epochs.VerifyOpened); until then nothing is delivered.
	var opens []*epochs.Opened
	var openedEvents []id.EventID
	checked := map[epochs.ID]bool{}
	for _, m := range msgs {
		if !checked[m.e.Epoch] && len(departed(r, m.e.Epoch, to)) > 0 {
			// Recipients that may have left: the single path asks.
			return fmt.Errorf("%w: %s is of an epoch held by puppets not joined", inbound.ErrNoRun, m.ev.EventID)
		}
		checked[m.e.Epoch] = true
		device, plain := id.DeviceID(""), []byte(nil)
		if o, ok := own[string(m.digest[:])]; ok {
			if o.resendOf != "" || r.m.Refused(m.e.Epoch) {
				// A copy we sent again, or an original to send again
				// (resend): the single path decides.
				return fmt.Errorf("%w: %s is a message of ours to resend or resent", inbound.ErrNoRun, m.ev.EventID)
			}
			device, plain = o.device, o.plaintext
		} else {
			opened, err := r.m.OpenDeferred(m.e.Epoch, m.e.Ciphertext)
			switch {
			case err != nil:
				return fmt.Errorf("%w: %s: %w", inbound.ErrNoRun, m.ev.EventID, err)
			case opened.Sender.UserID != string(m.ev.Sender):
				return fmt.Errorf("%w: %s is not from its MLS sender", inbound.ErrNoRun, m.ev.EventID)
			case opened.Skipped > 0:
				return fmt.Errorf("%w: %s skips %d generations", inbound.ErrNoRun, m.ev.EventID, opened.Skipped)
			}
			device, plain = id.DeviceID(opened.Sender.DeviceID), opened.Plaintext
			decrypted++
			opens = append(opens, opened)
			openedEvents = append(openedEvents, m.ev.EventID)
		}
		p, err := ParsePlaintext(plain)
		if err != nil || p.RoomID != string(r.id) {
			return fmt.Errorf("%w: %s has a bad plaintext", inbound.ErrNoRun, m.ev.EventID)
		}
		ds = append(ds, Delivered{RoomID: r.id, EventID: m.ev.EventID, Kind: KindMessage, Sender: m.ev.Sender,
			SenderDevice: device, Type: p.Type, Content: p.Content, OriginServerTS: m.ev.OriginServerTS})
	}
	if bad, err := epochs.VerifyOpened(opens); err != nil {
		return fmt.Errorf("%w: %s: %w", inbound.ErrNoRun, openedEvents[bad], err)
	}
	// The messages go in statements of at most s.runRows rows each (and
	// a span a puppet each), so that a long run does not build one
	// statement of millions of rows.
	per := max(1, s.runRows)
	var got []id.UserID
	for i := 0; i < len(ds); i += per {
		g, err := s.deliverAll(ctx, w, to, ds[i:min(i+per, len(ds))])
		if errors.Is(err, errRedelivered) {
			return fmt.Errorf("%w: %w", inbound.ErrNoRun, err)
		}
		if err != nil {
			return err
		}
		got = append(got, g...)
	}
	slices.Sort(got)
	got = slices.Compact(got)
	if err := s.saveRoom(ctx, w, r); err != nil {
		return err
	}
	w.AfterCommit(func() { s.notify.wake(got) })
	w.Count(s.metrics.MessagesDecrypt, float64(decrypted))
	each := time.Since(start).Seconds() / float64(len(msgs))
	for range msgs {
		s.metrics.DecryptSeconds.Observe(each)
	}
	return nil
}
