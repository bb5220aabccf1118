package groups

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// A homeserver does not always receive every event of a room. When
// federation between two servers comes back after a partition, Synapse
// sends the other server only its latest event in each room; the
// receiver asks for at most 10 of the missing events before it
// (get_missing_events) and takes the room's state at the rest on trust.
// The events of the hole are never persisted there, so never sent to the
// appservice, and /event answers 404 for them: backfill's walk along
// commit_event stops at the first commit of the hole.
//
// Paging the room's timeline backwards (/messages dir=b) into the hole
// is what makes Synapse fetch it from the other server (its backfill).
// A gap pages from the room's latest event until it has the commit event
// the walk needs, bounded by Config.MaxHistory events; what it paged and
// the service never received by transaction (inbound_event) is the hole,
// and backfill applies it as if it had come in order: membership first
// (the commits of the hole are checked against it), then the commit
// chain, then the hole's messages.
//
// A hole that holds no commit leaves no link to follow. fillHole pages
// back past an event to the far side of the hole when one of three
// things suggests a hole before it: a message stepped over its sender's
// earlier messages in the epoch (epochs.Opened.Skipped); a remote
// server's event came late (groups.late_event), as every event does that
// a homeserver catching up after a partition fetches; a remote commit,
// after which nothing would show that its sender's last messages of the
// base epoch are missing.

// gapPage is how many events one /messages request asks for.
const gapPage = 50

// gap is one paging of a room's timeline backwards, newest first.
type gap struct {
	s    *Service
	r    *room
	as   id.UserID
	from string // the next page's token
	done bool   // reached the room's start or the bound
	// events are the paged events of the room, newest first; pos finds
	// one by id.
	events []inbound.RoomEvent
	pos    map[id.EventID]int
}

func newGap(s *Service, r *room, as id.UserID) *gap {
	return &gap{s: s, r: r, as: as, pos: map[id.EventID]int{}}
}

// find pages back until event is among the paged events, and returns it
// raw; nil if the room's start or the bound came first.
func (g *gap) find(ctx context.Context, event id.EventID) (json.RawMessage, error) {
	for {
		if i, ok := g.pos[event]; ok {
			return g.events[i].Raw, nil
		}
		if g.done {
			return nil, nil
		}
		if err := g.page(ctx); err != nil {
			return nil, err
		}
	}
}

// page fetches the next, older page.
func (g *gap) page(ctx context.Context) error {
	chunk, end, err := g.s.cfg.Puppets.Messages(ctx, g.as, g.r.id, g.from, gapPage)
	if err != nil {
		return err
	}
	g.s.metrics.HistoryFetched.Add(float64(len(chunk)))
	for _, raw := range chunk {
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil || ev.RoomID != g.r.id {
			continue
		}
		if _, dup := g.pos[ev.EventID]; dup {
			continue
		}
		g.pos[ev.EventID] = len(g.events)
		g.events = append(g.events, ev)
	}
	g.from = end
	if end == "" || len(chunk) == 0 || len(g.events) >= g.s.cfg.MaxHistory {
		g.done = true
	}
	return nil
}

// received returns which paged events reached us by transaction (or an
// earlier hole's filling).
func (g *gap) received(ctx context.Context, q database.Querier) (map[id.EventID]bool, error) {
	ids := make([]string, len(g.events))
	for i, ev := range g.events {
		ids[i] = string(ev.EventID)
	}
	rows, err := q.Query(ctx, `SELECT DISTINCT event_id FROM inbound_event WHERE kind = 'room' AND event_id = ANY($1)`, ids)
	if err != nil {
		return nil, errf(g.r.id, "received events: %w", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, errf(g.r.id, "received events: %w", err)
	}
	out := make(map[id.EventID]bool, len(got))
	for _, e := range got {
		out[id.EventID(e)] = true
	}
	return out, nil
}

// hole returns the paged events that never reached us by transaction,
// oldest first. Events newer than the newest one we received are not in
// it: they are on their way (Synapse sends the events it fetched after
// the hole in later transactions). Synapse does not always send those in
// timeline order, so an event of the hole may still arrive by
// transaction after it was applied here: a commit is then a duplicate by
// its hash, a membership event by its id, and a message by its delivery
// (receiveMessage, group.ErrReplay). Events older than the oldest one we
// received are not in it either: the hole is what lies between events we
// have, never the room's history from before our puppets joined it.
func (g *gap) hole(ctx context.Context, q database.Querier) ([]inbound.RoomEvent, error) {
	got, err := g.received(ctx, q)
	if err != nil {
		return nil, err
	}
	newest, oldest := -1, -1
	for i, ev := range g.events {
		if got[ev.EventID] {
			if newest < 0 {
				newest = i
			}
			oldest = i
		}
	}
	var out []inbound.RoomEvent
	for i := oldest - 1; i > newest; i-- {
		if !got[g.events[i].EventID] {
			out = append(out, g.events[i])
		}
	}
	return out, nil
}

// pageBefore pages back past event until an older event that we received
// is among the paged ones (the far side of a hole), the room's start, or
// the bound.
func (g *gap) pageBefore(ctx context.Context, q database.Querier, event id.EventID) error {
	for {
		if i, ok := g.pos[event]; ok && i+1 < len(g.events) {
			got, err := g.received(ctx, q)
			if err != nil {
				return err
			}
			for _, older := range g.events[i+1:] {
				if got[older.EventID] {
					return nil
				}
			}
		}
		if g.done {
			return nil
		}
		if err := g.page(ctx); err != nil {
			return err
		}
	}
}

// Why a hole before an event is looked for (fillHole); the label of
// mlsas_dmls_hole_checks_total.
const (
	// holeSkipped: a message stepped over earlier messages of its sender
	// (epochs.Opened.Skipped). Matrix delivers a sender's events in order,
	// so those never reached us, and no commit link leads to them when
	// the hole holds no commit.
	holeSkipped = "skipped"
	// holeLate: a remote server's event reached us groups.late_event or
	// more after it was made. Federation was down or behind, and a
	// homeserver that catches up fetches only the last few events it
	// missed: whatever the hole holds (another sender's messages, a
	// sender's last messages of an epoch) may show nowhere else.
	holeLate = "late"
	// holeRemoteCommit: a commit from another server. A sender's last
	// messages of the commit's base epoch leave no trace after it (its
	// next messages start the next epoch's generations), however promptly
	// the commit itself came.
	holeRemoteCommit = "remote_commit"
)

// checkHole looks for a hole before ev, a room event of loaded room r
// that came by transaction, when ev gives reason to (holeLate,
// holeRemoteCommit), and fills it. Our homeserver's own events never
// leave holes: it sends the appservice every event it persists.
func (s *Service) checkHole(ctx context.Context, w *inbound.Work, r *room, ev inbound.RoomEvent, commit bool) error {
	if s.cfg.LateEvent <= 0 || senderServer(ev.Sender) == s.cfg.Domain || r == nil || !r.held() {
		return nil
	}
	if commit {
		return s.fillHole(ctx, w, r, ev, holeRemoteCommit)
	}
	if !s.late(ev, w.Item.CreatedAt) {
		return nil
	}
	return s.fillHole(ctx, w, r, ev, holeLate)
}

// cameLate reports whether ev, which reached us at, is a remote server's
// event that came groups.late_event or more after its origin_server_ts.
func (s *Service) cameLate(ev inbound.RoomEvent, at time.Time) bool {
	return s.cfg.LateEvent > 0 && senderServer(ev.Sender) != s.cfg.Domain &&
		at.Sub(time.UnixMilli(ev.OriginServerTS)) >= s.cfg.LateEvent
}

// late reports whether ev came late (cameLate) and takes the room's turn:
// a catch-up after a partition brings many late events at once, and one
// paging from the room's latest event covers the hole behind them all.
// The turns are kept in memory: after a restart a room may be checked
// once more than needed.
func (s *Service) late(ev inbound.RoomEvent, at time.Time) bool {
	if !s.cameLate(ev, at) {
		return false
	}
	return s.lateChecked.markUnlessWithin(ev.RoomID, at)
}

// fillHole looks for a hole before ev (why says what suggested one): it
// pages back past ev to the far side of the hole, an older event that we
// received, and applies what it finds there as backfill does. Nothing
// found costs a page.
func (s *Service) fillHole(ctx context.Context, w *inbound.Work, r *room, ev inbound.RoomEvent, why string) error {
	ours := r.m.Ours()
	if len(ours) == 0 || ctx.Value(backfilling{}) != nil {
		return nil
	}
	ctx = context.WithValue(ctx, backfilling{}, true)
	w.Count(s.metrics.HoleChecks.WithLabelValues(why), 1)
	log := s.cfg.Log.With().Stringer("room_id", r.id).Stringer("event_id", ev.EventID).Str("reason", why).Logger()
	as, err := s.reader(ctx, w.Q, r, ours)
	if err != nil {
		return err
	}
	g := newGap(s, r, as)
	if err := g.pageBefore(ctx, w.Q, ev.EventID); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.Count(s.metrics.HistoryStopped.WithLabelValues("fetch_failed"), 1)
		log.Warn().Err(err).Msg("Could not page back into the room's timeline for a hole")
		return nil
	}
	hole, err := g.hole(ctx, w.Q)
	if err != nil || len(hole) == 0 {
		return err
	}
	log.Info().Int("paged", len(g.events)).Int("hole", len(hole)).
		Msg("Paged back into a hole in the room's timeline: applying the events that never came by transaction")
	if err := g.applyMembership(ctx, w, hole); err != nil {
		return err
	}
	return g.applyRest(ctx, w, hole)
}

// record notes a hole's event as received, so that it is applied once:
// a later walk skips it, and the membership at it can be asked for.
func (g *gap) record(ctx context.Context, q database.Querier, ev inbound.RoomEvent) error {
	return database.RecordEvent(ctx, q, 0, database.InboundEvent{Kind: "room", Type: ev.Type, RoomID: string(ev.RoomID),
		EventID: string(ev.EventID), Sender: string(ev.Sender), Raw: ev.Raw})
}

// applyMembership records the membership events of the hole, oldest
// first, unless an event we received later already changed that user's
// membership (it is then newer than the hole: paging started at the
// room's latest event, so it is among the paged ones before it).
func (g *gap) applyMembership(ctx context.Context, w *inbound.Work, hole []inbound.RoomEvent) error {
	s := g.s
	to, err := s.joinedPuppets(ctx, w.Q, g.r.id)
	if err != nil {
		return err
	}
	for _, ev := range hole {
		if ev.Type != "m.room.member" || ev.StateKey == nil {
			continue
		}
		if err := g.record(ctx, w.Q, ev); err != nil {
			return err
		}
		w.Count(s.metrics.GapEvents.WithLabelValues("membership"), 1)
		var current string
		err := w.Q.QueryRow(ctx, `SELECT event_id FROM room_member WHERE room_id = $1 AND user_id = $2`, g.r.id, *ev.StateKey).Scan(&current)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return errf(g.r.id, "membership of %s: %w", *ev.StateKey, err)
		}
		if i, ok := g.pos[id.EventID(current)]; ok && i < g.pos[ev.EventID] {
			continue
		}
		if err := forgetDevices(ctx, w.Q, []string{*ev.StateKey}); err != nil {
			return err
		}
		if err := database.SetMembership(ctx, w.Q, database.MemberEvent{RoomID: string(g.r.id), EventID: string(ev.EventID),
			UserID: *ev.StateKey, Membership: ev.Membership}); err != nil {
			return err
		}
		if err := s.deliverMembership(ctx, w, ev, to); err != nil {
			return err
		}
	}
	return nil
}

// applyRest applies the hole's encrypted events, oldest first: commits
// the walk did not need (an applied one is a duplicate), and messages.
func (g *gap) applyRest(ctx context.Context, w *inbound.Work, hole []inbound.RoomEvent) error {
	for _, ev := range hole {
		if ev.Type != EncryptedType {
			continue
		}
		if err := g.record(ctx, w.Q, ev); err != nil {
			return err
		}
		e, err := ParseEncrypted(ev.Content)
		if err != nil || !g.s.supported(e.Algorithm) {
			w.Count(g.s.metrics.MalformedEvents.WithLabelValues("room_event"), 1)
			continue
		}
		kind := "message"
		if e.Commit != nil {
			kind = "commit"
		}
		w.Count(g.s.metrics.GapEvents.WithLabelValues(kind), 1)
		if err := g.s.applyEncrypted(ctx, w, g.r, ev, e); err != nil {
			return err
		}
	}
	return nil
}
