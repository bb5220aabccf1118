package groups

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// learnHistory learns as much of the room's commit history as base
// selection needs after a join (epochs/doc.go, "Commit events and
// joining"): while the known histories of the epochs we hold do not meet
// (epochs.Graph.MissingHistory), it fetches the commit event that made
// each missing epoch, which the commit event of one of its children names
// in commit_event, and records what it says (epochs.Member.Observe). The
// homeserver fetches events over federation where it must. A chain ends
// at the room's first epoch, at an event that is not a commit of this
// room, or after Config.MaxHistory fetches (logged and counted); base
// selection then orders what it knows.
func (s *Service) learnHistory(ctx context.Context, r *room, as id.UserID) error {
	h := newHistory(s, r, as)
	ended := map[epochs.ID]bool{}
	for h.fetched < s.cfg.MaxHistory {
		missing := slices.DeleteFunc(r.m.Graph().MissingHistory(), func(e epochs.ID) bool { return ended[e] })
		if len(missing) == 0 {
			return nil
		}
		if h.fetched >= s.cfg.MaxHistory {
			break
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
	if len(slices.DeleteFunc(r.m.Graph().MissingHistory(), func(e epochs.ID) bool { return ended[e] })) > 0 {
		s.metrics.HistoryStopped.WithLabelValues("limit").Inc()
		s.cfg.Log.Warn().Stringer("room_id", r.id).Int("fetched", h.fetched).Int("max_history", s.cfg.MaxHistory).
			Msg("Stopped learning the branch's history at groups.max_history; base selection orders what is known")
	}
	return nil
}

// history is one walk over the room's commit events (learnHistory,
// followBehind): the events it fetched, each fetched once.
type history struct {
	s       *Service
	r       *room
	as      id.UserID
	seen    map[id.EventID]*commitEvent // nil: fetched, not a commit of the room
	fetched int
}

// commitEvent is a fetched commit event of the room, parsed.
type commitEvent struct {
	ev inbound.RoomEvent
	e  *Encrypted
}

func newHistory(s *Service, r *room, as id.UserID) *history {
	return &history{s: s, r: r, as: as, seen: map[id.EventID]*commitEvent{}}
}

// learn observes the commit that made epoch, reaching it through the
// commit events of epoch's children. It reports whether it found one.
func (h *history) learn(ctx context.Context, epoch epochs.ID) (bool, error) {
	for _, child := range h.r.m.Graph().Children(epoch) {
		n, _ := h.r.m.Graph().Node(child)
		if n.CommitEvent == "" {
			continue
		}
		c, err := h.commit(ctx, id.EventID(n.CommitEvent))
		if err != nil {
			return false, err
		}
		if c == nil || c.e.Epoch != epoch || c.e.CommitEvent == "" {
			continue
		}
		made, err := h.commit(ctx, id.EventID(c.e.CommitEvent))
		if err != nil {
			return false, err
		}
		if made == nil || made.e.Commit.Next != epoch {
			continue
		}
		e := made.e
		h.r.m.Observe(epochs.Commit{Message: e.Ciphertext, Base: e.Epoch, Epoch: e.Commit.Next, Number: e.Commit.NextNumber,
			Resolves: e.Commit.DMLSResolv, Creator: e.Commit.Sender, EventID: string(made.ev.EventID)})
		return true, nil
	}
	return false, nil
}

// commit fetches a commit event of the room; it returns nil for an event
// that is not one, and stops fetching after Config.MaxHistory events.
func (h *history) commit(ctx context.Context, event id.EventID) (*commitEvent, error) {
	if c, ok := h.seen[event]; ok {
		return c, nil
	}
	if h.fetched >= h.s.cfg.MaxHistory {
		return nil, nil
	}
	h.fetched++
	h.s.metrics.HistoryFetched.Inc()
	raw, err := h.s.cfg.Puppets.Event(ctx, h.as, h.r.id, event)
	if err != nil {
		return nil, fmt.Errorf("fetch commit event %s: %w", event, err)
	}
	h.seen[event] = nil
	ev, err := inbound.ParseRoomEvent(raw)
	if err != nil || ev.Type != EncryptedType || ev.RoomID != h.r.id || ev.EventID != event {
		return nil, nil
	}
	e, err := ParseEncrypted(ev.Content)
	if err != nil || e.Commit == nil || string(ev.Sender) != e.Commit.Sender.UserID {
		return nil, nil
	}
	h.seen[event] = &commitEvent{ev, e}
	return h.seen[event], nil
}

// followBehind fetches, reading as as, the commit event of each epoch
// that our devices in its parent have not followed into
// (epochs.Member.Behind), oldest first, and applies it as if it had
// arrived (applyEncrypted): the epoch's group then holds the devices with
// their keys instead of waiting groups.wait to remove them as orphans and
// add them again (a round of commits and Welcomes for every device a room
// creator added before its puppet joined, 8 of every 9 in the load run).
//
// Where the chain is cut (epochs.Member.Unreached), the Welcome into an
// epoch between never came: Synapse drops to-device messages to an
// application service that is down, and never delivered 18 of 915 in one
// load run with the service up. The commits up to the cut are then
// backfilled from the older epoch along commit_event links, so that only
// the device whose Welcome was lost is left an orphan, not every device
// below it.
//
// A fetch that fails, or an event that is not the epoch's commit, is
// logged and counted (mlsas_dmls_history_stopped_total) and leaves that
// epoch to the orphan rule; at most groups.max_history events are
// fetched here, and as many by each backfill.
func (s *Service) followBehind(ctx context.Context, w *inbound.Work, r *room, as id.UserID) error {
	log := s.cfg.Log.With().Stringer("room_id", r.id).Stringer("as", as).Logger()
	h := newHistory(s, r, as)
	tried := map[epochs.ID]bool{}
	untried := func(ids []epochs.ID) epochs.ID {
		for _, e := range ids {
			if !tried[e] {
				return e
			}
		}
		return ""
	}
	applied := 0
	defer func() {
		if applied > 0 {
			log.Info().Int("commits", applied).Msg("Fetched the commits our devices joined past by Welcome; they followed")
		}
	}()
	for {
		epoch, cut := untried(r.m.Behind()), false
		if epoch == "" {
			epoch, cut = untried(r.m.Unreached()), true
		}
		if epoch == "" {
			return nil
		}
		tried[epoch] = true
		n, _ := r.m.Graph().Node(epoch)
		if n.CommitEvent == "" {
			continue
		}
		if h.fetched >= s.cfg.MaxHistory {
			w.Count(s.metrics.HistoryStopped.WithLabelValues("limit"), 1)
			log.Warn().Int("fetched", h.fetched).Int("max_history", s.cfg.MaxHistory).
				Msg("Stopped fetching the commits our devices are behind at groups.max_history; the rest wait as orphans")
			return nil
		}
		c, err := h.commit(ctx, id.EventID(n.CommitEvent))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.Count(s.metrics.HistoryStopped.WithLabelValues("fetch_failed"), 1)
			log.Warn().Err(err).Str("commit_event", truncate(n.CommitEvent)).
				Msg("Could not fetch the commit of an epoch our devices are behind in")
			continue
		}
		if c == nil || c.e.Commit.Next != epoch || c.e.Epoch != n.Parent {
			w.Count(s.metrics.HistoryStopped.WithLabelValues("not_a_commit"), 1)
			log.Warn().Str("commit_event", truncate(n.CommitEvent)).
				Msg("The commit_event of an epoch our devices are behind in is not its commit")
			continue
		}
		if cut {
			if err := s.backfill(ctx, w, r, c.e.Epoch, c.e.CommitEvent); err != nil {
				return err
			}
			if b, ok := r.node(c.e.Epoch); !ok || !b.Retained {
				continue // the backfill said why
			}
		}
		w.Count(s.metrics.Backfilled, 1)
		if err := s.applyEncrypted(ctx, w, r, c.ev, c.e); err != nil {
			return err
		}
		applied++
	}
}

// backfilling marks the context of a backfill's applications.
type backfilling struct{}

// backfill fetches the commits we missed that lead to epoch, the epoch an
// event we could not process names, and applies them, oldest first
// (DESIGN §5, epochs/doc.go "Commit events and joining"). link is the
// event's commit_event: the commit that made epoch. Each commit names in
// its own commit_event the commit that made its base, so the walk goes
// back one commit per fetch until it reaches a commit whose base we hold;
// the homeserver fetches events it lacks over federation.
//
// The walk stops, logged and counted by reason, at an event that is not
// a commit of the room or does not continue the chain, at a fetch that
// fails, or after Config.MaxHistory fetches. The event that named epoch
// then keeps waiting (the caller put it in dmls_waiting) until its epoch
// arrives by other means: a later transaction, or a Welcome when a
// member's resolving commit adds our device again. We wait rather than
// rejoin by external commit because an external commit changes the group
// for everyone and races the resolutions of members that do hold the
// history, and because the wait is bounded (groups.wait) and counted.
func (s *Service) backfill(ctx context.Context, w *inbound.Work, r *room, epoch epochs.ID, link string) error {
	// Any device of ours can fetch: the base's holders may be none (our
	// devices there were removed, or the base is an epoch we only know of).
	ours := r.m.Ours()
	if len(ours) == 0 || link == "" || ctx.Value(backfilling{}) != nil {
		// Applying a backfilled commit never starts another walk: the
		// chain ends at an epoch we hold.
		return nil
	}
	ctx = context.WithValue(ctx, backfilling{}, true)
	log := s.cfg.Log.With().Stringer("room_id", r.id).Str("epoch", epoch.String()).Logger()
	as, err := s.reader(ctx, w.Q, r, ours)
	if err != nil {
		return err
	}
	h := newHistory(s, r, as)
	type step struct {
		ev inbound.RoomEvent
		e  *Encrypted
	}
	var chain []step
	var g *gap // paged only if the homeserver lacks a commit event
	want := epoch
	stop := ""
	for {
		if h.fetched >= s.cfg.MaxHistory {
			stop = "limit"
			break
		}
		raw, err := s.cfg.Puppets.Event(ctx, h.as, r.id, id.EventID(link))
		h.fetched++
		s.metrics.HistoryFetched.Inc()
		if err != nil && ctx.Err() == nil {
			// Not on our homeserver: a hole after a partition (gap.go).
			if g == nil {
				g = newGap(s, r, h.as)
			}
			var gerr error
			if raw, gerr = g.find(ctx, id.EventID(link)); raw != nil {
				err = nil
			} else if gerr != nil {
				err = errors.Join(err, gerr)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn().Err(err).Str("commit_event", truncate(link)).Msg("Backfill: could not fetch a commit event")
			stop = "fetch_failed"
			break
		}
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil || ev.Type != EncryptedType || ev.RoomID != r.id || string(ev.EventID) != link {
			stop = "not_a_commit"
			break
		}
		e, err := ParseEncrypted(ev.Content)
		if err != nil || e.Commit == nil || e.Commit.Next != want || string(ev.Sender) != e.Commit.Sender.UserID {
			stop = "not_a_commit"
			break
		}
		chain = append(chain, step{ev, e})
		if n, ok := r.node(e.Epoch); ok && n.Retained {
			break
		}
		if e.CommitEvent == "" {
			stop = "no_link"
			break
		}
		want, link = e.Epoch, e.CommitEvent
	}
	if stop != "" {
		w.Count(s.metrics.HistoryStopped.WithLabelValues(stop), 1)
		log.Warn().Str("reason", stop).Int("fetched", h.fetched).Int("max_history", s.cfg.MaxHistory).
			Msg("Backfill stopped before an epoch we hold; the event waits for its epoch (a later transaction or a Welcome)")
		return nil
	}
	var hole []inbound.RoomEvent
	if g != nil {
		// The hole ends where we received events again: page back past
		// the oldest commit of the chain to the first of them.
		if err := g.pageBefore(ctx, w.Q, chain[len(chain)-1].ev.EventID); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			log.Warn().Err(err).Msg("Backfill: could not page back to the far side of the hole; applying the commits alone")
		}
		var err error
		if hole, err = g.hole(ctx, w.Q); err != nil {
			return err
		}
		log.Info().Int("paged", len(g.events)).Int("hole", len(hole)).Msg("Backfill: paged back into a hole in the room's timeline")
		if err := g.applyMembership(ctx, w, hole); err != nil {
			return err
		}
	}
	log.Info().Int("commits", len(chain)).Msg("Backfilling missed commits along commit_event")
	for i := len(chain) - 1; i >= 0; i-- {
		if n, ok := r.node(chain[i].e.Commit.Next); ok && n.Retained {
			continue // arrived meanwhile
		}
		w.Count(s.metrics.Backfilled, 1)
		if err := s.applyEncrypted(ctx, w, r, chain[i].ev, chain[i].e); err != nil {
			return err
		}
		if n, ok := r.node(chain[i].e.Commit.Next); !ok || !n.Retained {
			// Refused, a duplicate of a commit processed before, or one
			// that removed us: the walk cannot go further forward.
			w.Count(s.metrics.HistoryStopped.WithLabelValues("not_applied"), 1)
			log.Warn().Stringer("event_id", chain[i].ev.EventID).Int("remaining", i).
				Msg("Backfill: a fetched commit did not give us its epoch; the event waits")
			return nil
		}
	}
	if g != nil {
		return g.applyRest(ctx, w, hole)
	}
	return nil
}

// reader returns the puppet of ours that backfill and hole filling read
// the room's history as: one joined to the room now, preferably one with
// a device among ours, the member's devices, which may include puppets
// that have left but whose removal no epoch we hold reflects yet. A puppet
// that has left sees the room's history only up to its leave (history
// visibility), so reading as one misses everything after it: in a soak
// run a service paged back as a puppet removed during a partition, saw
// none of the other side's messages sent after the leave, and never
// delivered them. With no puppet of ours joined, the first of ours reads.
func (s *Service) reader(ctx context.Context, q database.Querier, r *room, ours []epochs.Device) (id.UserID, error) {
	joined, err := s.joinedPuppets(ctx, q, r.id)
	if err != nil {
		return "", err
	}
	in := userSet(joined)
	for _, d := range ours {
		if in[id.UserID(d.UserID)] {
			return id.UserID(d.UserID), nil
		}
	}
	if len(joined) > 0 {
		return joined[0], nil
	}
	return id.UserID(ours[0].UserID), nil
}

// backfillWaiting walks back again for every epoch that messages still
// wait for: after a Welcome put a device of ours on a branch whose earlier
// epochs we lack (the commits of a hole the first walk could not reach
// yet), and before a wait ends. An epoch held by then is skipped.
func (s *Service) backfillWaiting(ctx context.Context, w *inbound.Work, r *room) error {
	rows, err := w.Q.Query(ctx, `SELECT event FROM dmls_waiting WHERE room_id = $1 ORDER BY expires_at`, r.id)
	if err != nil {
		return errf(r.id, "waiting events: %w", err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return errf(r.id, "waiting events: %w", err)
	}
	tried := map[epochs.ID]bool{}
	for _, raw := range raws {
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil {
			continue
		}
		e, err := ParseEncrypted(ev.Content)
		if err != nil || e.Commit != nil || tried[e.Epoch] {
			// A waiting commit is applied when its base comes; one whose
			// base never does was made on a branch before our devices were
			// in the group, which no walk reaches.
			continue
		}
		tried[e.Epoch] = true
		if n, ok := r.node(e.Epoch); ok && n.Retained {
			continue
		}
		if err := s.backfill(ctx, w, r, e.Epoch, e.CommitEvent); err != nil {
			return err
		}
	}
	return nil
}
