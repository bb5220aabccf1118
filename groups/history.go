package groups

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// maxHistory bounds how many commit events a joiner fetches to learn its
// branch's history.
const maxHistory = 64

// learnHistory learns the history of the branch a Welcome put one of our
// devices on (epochs/doc.go, "Commit events and joining"): starting at
// the commit event that made the joined epoch, it fetches each commit
// event from the homeserver (which fetches it over federation if it must)
// and follows its commit_event link to the commit that made its base,
// recording what each says (epochs.Member.Observe), until it reaches an
// epoch the graph already knows, the room's first epoch, or maxHistory.
func (s *Service) learnHistory(ctx context.Context, w *inbound.Work, r *room, as id.UserID, start string) error {
	event := start
	for range maxHistory {
		raw, err := s.cfg.Puppets.Event(ctx, as, r.id, id.EventID(event))
		if err != nil {
			return err
		}
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil {
			return fmt.Errorf("event %s: %w", event, err)
		}
		if ev.Type != EncryptedType || ev.RoomID != r.id {
			return nil // the room's create event, or not a commit: the chain ends
		}
		e, err := ParseEncrypted(ev.Content)
		if err != nil || e.Commit == nil {
			return nil
		}
		_, known := r.node(e.Epoch)
		r.m.Observe(epochs.Commit{Message: e.Ciphertext, Base: e.Epoch, Epoch: e.Commit.Next, Number: e.Commit.NextNumber,
			Resolves: e.Commit.DMLSResolv, Creator: e.Commit.Sender, EventID: string(ev.EventID)})
		if known {
			return nil
		}
		event = e.CommitEvent
	}
	return nil
}
