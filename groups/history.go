package groups

import (
	"context"
	"fmt"
	"slices"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// maxHistory bounds how many commit events one join fetches to learn the
// history of its branch.
const maxHistory = 64

// learnHistory learns as much of the room's commit history as base
// selection needs after a join (epochs/doc.go, "Commit events and
// joining"): while the known histories of the epochs we hold do not meet
// (epochs.Graph.MissingHistory), it fetches the commit event that made
// each missing epoch, which the commit event of one of its children names
// in commit_event, and records what it says (epochs.Member.Observe). The
// homeserver fetches events over federation where it must. A chain ends
// at the room's first epoch, at an event that is not a commit of this
// room, or after maxHistory fetches; base selection then orders what it
// knows.
func (s *Service) learnHistory(ctx context.Context, r *room, as id.UserID) error {
	h := history{s: s, r: r, as: as, seen: map[id.EventID]*Encrypted{}}
	ended := map[epochs.ID]bool{}
	for h.fetched < maxHistory {
		missing := slices.DeleteFunc(r.m.Graph().MissingHistory(), func(e epochs.ID) bool { return ended[e] })
		if len(missing) == 0 {
			return nil
		}
		for _, epoch := range missing {
			found, err := h.learn(ctx, epoch)
			if err != nil {
				return err
			}
			if !found {
				ended[epoch] = true
			}
		}
	}
	return nil
}

// history is one learnHistory walk: the events it fetched, each fetched
// once.
type history struct {
	s       *Service
	r       *room
	as      id.UserID
	seen    map[id.EventID]*Encrypted // nil: fetched, not a commit of the room
	fetched int
}

// learn observes the commit that made epoch, reaching it through the
// commit events of epoch's children. It reports whether it found one.
func (h *history) learn(ctx context.Context, epoch epochs.ID) (bool, error) {
	for _, child := range h.r.m.Graph().Children(epoch) {
		n, _ := h.r.m.Graph().Node(child)
		if n.CommitEvent == "" {
			continue
		}
		c, _, err := h.commit(ctx, id.EventID(n.CommitEvent))
		if err != nil || c == nil || c.Epoch != epoch || c.CommitEvent == "" {
			if err != nil {
				return false, err
			}
			continue
		}
		e, eventID, err := h.commit(ctx, id.EventID(c.CommitEvent))
		if err != nil {
			return false, err
		}
		if e == nil || e.Commit.Next != epoch {
			continue
		}
		h.r.m.Observe(epochs.Commit{Message: e.Ciphertext, Base: e.Epoch, Epoch: e.Commit.Next, Number: e.Commit.NextNumber,
			Resolves: e.Commit.DMLSResolv, Creator: e.Commit.Sender, EventID: string(eventID)})
		return true, nil
	}
	return false, nil
}

// commit fetches a commit event of the room; it returns nil for an event
// that is not one, and stops fetching after maxHistory events.
func (h *history) commit(ctx context.Context, event id.EventID) (*Encrypted, id.EventID, error) {
	if e, ok := h.seen[event]; ok {
		return e, event, nil
	}
	if h.fetched >= maxHistory {
		return nil, event, nil
	}
	h.fetched++
	h.s.metrics.HistoryFetched.Inc()
	raw, err := h.s.cfg.Puppets.Event(ctx, h.as, h.r.id, event)
	if err != nil {
		return nil, event, fmt.Errorf("fetch commit event %s: %w", event, err)
	}
	h.seen[event] = nil
	ev, err := inbound.ParseRoomEvent(raw)
	if err != nil || ev.Type != EncryptedType || ev.RoomID != h.r.id || ev.EventID != event {
		return nil, event, nil
	}
	e, err := ParseEncrypted(ev.Content)
	if err != nil || e.Commit == nil || string(ev.Sender) != e.Commit.Sender.UserID {
		return nil, event, nil
	}
	h.seen[event] = e
	return e, event, nil
}
