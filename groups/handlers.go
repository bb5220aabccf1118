package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
)

// The handlers the spine calls. Every change of a room's state happens on
// the room's queue (its events, and the items and timers this package
// puts there), so a room is changed by one worker at a time, in the
// homeserver's order, in the database transaction that finishes the item.

type roomHandler struct{ s *Service }

// creatorDeviceField names, in the content of an m.room.create event we
// make, the device of ours that holds the group's first epoch. It is
// public like the rest of the event; a room created elsewhere lacks it.
const creatorDeviceField = "org.mls-appservice.creator_device"

func (h roomHandler) RoomEvent(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent) error {
	s := h.s
	switch ev.Type {
	case "m.room.create":
		return s.roomCreated(ctx, w, ev)
	case "m.room.member":
		return s.memberEvent(ctx, w, ev)
	case EncryptedType:
		return s.encryptedEvent(ctx, w, ev)
	}
	return nil
}

// roomCreated records a room whose m.room.create names a DMLS algorithm;
// if one of our devices created it, that device's group starts here.
func (s *Service) roomCreated(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent) error {
	var c struct {
		Encryption *struct {
			Algorithm string `json:"algorithm"`
		} `json:"encryption"`
		CreatorDevice string `json:"org.mls-appservice.creator_device"`
	}
	if err := json.Unmarshal(ev.Content, &c); err != nil || c.Encryption == nil {
		return nil
	}
	if !s.supported(c.Encryption.Algorithm) {
		if strings.HasPrefix(c.Encryption.Algorithm, algorithmPrefix) {
			s.cfg.Log.Warn().Stringer("room_id", ev.RoomID).Str("algorithm", truncate(c.Encryption.Algorithm)).
				Msg("DMLS room of a cipher suite we do not run; ignored")
		}
		return nil
	}
	if err := s.recordRoom(ctx, w.Q, ev.RoomID, string(ev.EventID), ev.Sender); err != nil {
		return err
	}
	if c.CreatorDevice == "" || !s.cfg.Puppets.Owns(ev.Sender) {
		return nil
	}
	dev := keys.Device{UserID: ev.Sender, DeviceID: id.DeviceID(c.CreatorDevice)}
	if err := inbound.CheckDeviceID("creator device", c.CreatorDevice); err != nil {
		return nil
	}
	return s.createGroup(ctx, w, ev.RoomID, dev, string(ev.EventID))
}

// supported reports whether alg is the DMLS algorithm of our suite.
func (s *Service) supported(alg string) bool { return alg == keys.Algorithm(s.suite.ID()) }

// recordRoom notes a DMLS room, once.
func (s *Service) recordRoom(ctx context.Context, q database.Querier, room id.RoomID, createEvent string, creator id.UserID) error {
	_, err := q.Exec(ctx, `INSERT INTO dmls_room (room_id, suite, algorithm, create_event, creator) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (room_id) DO UPDATE SET create_event = coalesce(dmls_room.create_event, excluded.create_event),
			creator = coalesce(dmls_room.creator, excluded.creator)`,
		room, int(s.suite.ID()), keys.Algorithm(s.suite.ID()), nullable(createEvent), nullable(string(creator)))
	if err != nil {
		return errf(room, "record DMLS room: %w", err)
	}
	return nil
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// isDMLS reports whether room is a DMLS room we know, and its state.
func isDMLS(ctx context.Context, q database.Querier, room id.RoomID) (string, bool, error) {
	var state string
	err := q.QueryRow(ctx, `SELECT state FROM dmls_room WHERE room_id = $1`, room).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, errf(room, "read: %w", err)
	}
	return state, true, nil
}

// memberEvent handles a membership change: an invitation of one of our
// puppets (autojoin), one of ours joining (learn the room's membership),
// and for every change, the group's reconciliation (committer rule).
func (s *Service) memberEvent(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent) error {
	target := id.UserID(*ev.StateKey)
	ours := s.cfg.Puppets.Owns(target)
	if err := forgetDevices(ctx, w.Q, []string{string(target)}); err != nil {
		return err
	}
	if ours && ev.Membership == "invite" {
		if err := s.invited(ctx, w, ev, target); err != nil {
			return err
		}
	}
	state, dmls, err := isDMLS(ctx, w.Q, ev.RoomID)
	if err != nil || !dmls {
		return err
	}
	if ours && ev.Membership == "join" {
		if err := s.seedMembersFirst(ctx, w, ev.RoomID, target); err != nil {
			// The room's membership is then known only from the events
			// that reach us; the room still works for what we see.
			s.cfg.Log.Warn().Err(err).Stringer("room_id", ev.RoomID).Msg("Could not read the room's membership")
		}
	}
	if state == "active" {
		if err := s.lateMembership(ctx, w, ev); err != nil {
			return err
		}
	}
	again, err := appliedBefore(ctx, w.Q, ev.EventID)
	if err != nil {
		return errf(ev.RoomID, "look up %s: %w", ev.EventID, err)
	}
	if again {
		// Our own join read back at once (queueOwnJoin), or an event
		// found in a hole, and now Synapse's copy: delivered then, to
		// the puppets joined then. (Delivered again, it cost a cursor
		// update for every joined puppet and a second to take it back,
		// and went as news to those who joined in between.)
		w.Count(s.metrics.DuplicateEvents, 1)
	} else {
		to, err := s.joinedPuppets(ctx, w.Q, ev.RoomID)
		if err != nil {
			return err
		}
		if err := s.deliverMembership(ctx, w, ev, to); err != nil {
			return err
		}
	}
	if state != "active" {
		return nil
	}
	if ours && ev.Membership == "join" {
		if err := s.learnHistoryAsJoined(ctx, w, ev.RoomID, target); err != nil {
			return err
		}
	}
	return s.reconcileAfter(ctx, w, ev.RoomID, reconcileReason{event: string(ev.EventID), at: w.Item.CreatedAt})
}

// lateMembership fills a hole before a late remote membership event
// (gap.go): a catch-up after a partition can end in membership changes.
func (s *Service) lateMembership(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent) error {
	if !s.cameLate(ev, w.Item.CreatedAt) {
		return nil
	}
	r, err := s.loadRoom(ctx, w.Q, ev.RoomID)
	if err != nil || r == nil || !r.held() {
		return err
	}
	if err := s.checkHole(ctx, w, r, ev, false); err != nil {
		return err
	}
	return s.saveRoom(ctx, w, r)
}

// reconcileAfter reconciles the room now if nothing waits behind the item
// being applied, and otherwise once after what waits: a burst of
// membership changes (a bot inviting fifty users, a room filling up) is
// then one commit, not one per event, each with a Welcome bigger than the
// last. The room's queue is strictly ordered, so the reconcile item runs
// after every change that was queued before it.
func (s *Service) reconcileAfter(ctx context.Context, w *inbound.Work, room id.RoomID, why reconcileReason) error {
	if w.Item.Seq == 0 {
		return s.reconcile(ctx, w, room, why)
	}
	last, err := database.LastItemAfter(ctx, w.Q, roomQueue(room), w.Item.Seq)
	switch {
	case err != nil:
		return err
	case last == "":
		return s.reconcile(ctx, w, room, why)
	case last == kindReconcile:
		return nil
	}
	w.Count(s.metrics.ReconcilesDeferred, 1)
	_, err = w.Out.AddItem(ctx, database.Item{Queue: roomQueue(room), Kind: kindReconcile, RoomID: string(room), Payload: []byte{}})
	return err
}

// deliverMembership gives a membership event to the puppets to.
func (s *Service) deliverMembership(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent, to []id.UserID) error {
	content := ev.Content
	if len(content) == 0 {
		content = json.RawMessage(`{}`)
	}
	got, err := s.deliver(ctx, w, to, Delivered{RoomID: ev.RoomID, EventID: ev.EventID, Kind: KindMembership,
		Sender: ev.Sender, Type: ev.Type, Content: content, OriginServerTS: ev.OriginServerTS})
	if err != nil {
		return err
	}
	w.AfterCommit(func() { s.notify.wake(got) })
	return nil
}

// learnHistoryAsJoined catches up, once puppet has joined, on what the
// room's events could not tell our devices before: the homeserver shows
// a user who is only invited none of the room's events, and Welcomes
// usually arrive before the invitation is accepted. It learns the
// branch's history (for base selection) and brings our devices into the
// epochs they are behind in (followBehind).
func (s *Service) learnHistoryAsJoined(ctx context.Context, w *inbound.Work, roomID id.RoomID, puppet id.UserID) error {
	r, err := s.loadRoom(ctx, w.Q, roomID)
	if err != nil || r == nil || !r.held() {
		return err
	}
	missing, behind := len(r.m.Graph().MissingHistory()) > 0, len(r.m.Behind())+len(r.m.Unreached()) > 0
	if !missing && !behind {
		return nil
	}
	if missing {
		if err := s.learnHistory(ctx, r, puppet); err != nil {
			s.cfg.Log.Warn().Err(err).Stringer("room_id", roomID).Stringer("as", puppet).
				Msg("Could not learn the branch's history; base selection may differ from older members' until it is known")
		}
	}
	if behind {
		if err := s.followBehind(ctx, w, r, puppet); err != nil {
			return err
		}
	}
	return s.saveRoom(ctx, w, r)
}

// invited decides about an invitation of our puppet: a DMLS room (known
// from the invite's stripped state) is recorded, and the invitation is
// accepted if the autojoin policy allows it.
func (s *Service) invited(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent, puppet id.UserID) error {
	var inv struct {
		Unsigned struct {
			State []struct {
				Type    string `json:"type"`
				Content struct {
					Encryption *struct {
						Algorithm string `json:"algorithm"`
					} `json:"encryption"`
				} `json:"content"`
			} `json:"invite_room_state"`
		} `json:"unsigned"`
	}
	_ = json.Unmarshal(ev.Raw, &inv)
	for _, st := range inv.Unsigned.State {
		if st.Type == "m.room.create" && st.Content.Encryption != nil && s.supported(st.Content.Encryption.Algorithm) {
			if err := s.recordRoom(ctx, w.Q, ev.RoomID, "", ""); err != nil {
				return err
			}
		}
	}
	if !s.autojoins(ev.Sender) {
		s.cfg.Log.Info().Stringer("room_id", ev.RoomID).Stringer("puppet", puppet).Stringer("inviter", ev.Sender).
			Str("policy", string(s.cfg.Autojoin)).Msg("Invitation left alone by the autojoin policy")
		return nil
	}
	return database.ScheduleTimer(ctx, w.Q, database.Timer{Kind: timerJoin, Key: string(ev.RoomID) + "|" + string(puppet),
		DueAt: s.now(), Payload: []byte(string(puppet) + "\n" + string(ev.RoomID) + "\n" + senderServer(ev.Sender))}, database.Replace)
}

func (s *Service) autojoins(inviter id.UserID) bool {
	switch s.cfg.Autojoin {
	case AutojoinAny:
		return true
	case AutojoinSame:
		return senderServer(inviter) == s.cfg.Domain
	}
	return false
}

func senderServer(u id.UserID) string {
	_, server, _ := strings.Cut(string(u), ":")
	return server
}

// joinTimer accepts an invitation as the puppet; a failure is retried
// by the timer with backoff.
type joinTimer struct{ s *Service }

func (t joinTimer) Timer(ctx context.Context, w *inbound.Work, timer database.Timer) (time.Time, error) {
	parts := strings.SplitN(string(timer.Payload), "\n", 3)
	if len(parts) != 3 {
		return time.Time{}, nil
	}
	puppet, room, server := id.UserID(parts[0]), id.RoomID(parts[1]), parts[2]
	var via []string
	if server != "" {
		via = []string{server}
	}
	if err := t.s.cfg.Puppets.JoinRoom(ctx, puppet, room, via); err != nil {
		return time.Time{}, err
	}
	t.s.cfg.Log.Info().Stringer("room_id", room).Stringer("puppet", puppet).Msg("Accepted invitation")
	if ev := t.s.readOwnJoin(ctx, room, puppet); ev != nil {
		return time.Time{}, t.s.queueOwnJoin(ctx, w, *ev)
	}
	return time.Time{}, nil
}

// queueOwnJoin queues our puppet's join event ev, read from the homeserver
// right after the join (readOwnJoin), as if it had arrived in a
// transaction. Synapse may hold it back (audit.go; seen once in
// TestGroupsEndToEnd after a restart), and until the join is seen the
// puppet is given none of the room's messages: the join is read back at
// once, not left to the next audit. The real event, should it come,
// changes nothing: every room handler is idempotent per event, and its
// membership entry is not delivered twice (appliedBefore). A failure
// to read the event is logged and counted; the join stands.
func (s *Service) queueOwnJoin(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent) error {
	known, err := memberEventKnown(ctx, w.Q, ev.EventID)
	if err != nil {
		return errf(ev.RoomID, "look up join %s: %w", ev.EventID, err)
	}
	if known {
		w.Count(s.metrics.OwnJoins.WithLabelValues("arrived"), 1)
		return nil
	}
	if err := queueRoomEvent(ctx, w, ev); err != nil {
		return err
	}
	w.Count(s.metrics.OwnJoins.WithLabelValues("queued"), 1)
	s.cfg.Log.Debug().Stringer("room_id", ev.RoomID).Str("puppet", *ev.StateKey).Stringer("event_id", ev.EventID).
		Msg("Queued our puppet's join event as read from the homeserver")
	return nil
}

// readOwnJoin returns puppet's join event of room from the homeserver, or
// nil (logged and counted) if it cannot be read or is not a join.
func (s *Service) readOwnJoin(ctx context.Context, room id.RoomID, puppet id.UserID) *inbound.RoomEvent {
	log := s.cfg.Log.With().Stringer("room_id", room).Stringer("puppet", puppet).Logger()
	raw, err := s.cfg.Puppets.MemberEvent(ctx, puppet, room, puppet)
	if err != nil {
		s.metrics.OwnJoins.WithLabelValues("unreadable").Inc()
		log.Warn().Err(err).Msg("Could not read our puppet's join event; waiting for the homeserver to send it")
		return nil
	}
	ev, err := inbound.ParseRoomEvent(raw)
	if err == nil && (ev.Type != "m.room.member" || ev.RoomID != room || ev.StateKey == nil || *ev.StateKey != string(puppet)) {
		err = fmt.Errorf("%w: not %s's membership of %s", inbound.ErrInvalid, puppet, room)
	}
	if err != nil {
		s.metrics.OwnJoins.WithLabelValues("malformed").Inc()
		log.Warn().Err(err).Msg("Our puppet's join event from the homeserver is malformed; waiting for the homeserver to send it")
		return nil
	}
	if ev.Membership != "join" {
		// Left or kicked already: that event is on its way too.
		s.metrics.OwnJoins.WithLabelValues("not_joined").Inc()
		return nil
	}
	return &ev
}

// joinedPuppets lists our puppets joined in room.
func (s *Service) joinedPuppets(ctx context.Context, q database.Querier, room id.RoomID) ([]id.UserID, error) {
	rows, err := q.Query(ctx, joinedPuppetsSQL, s.joinedPuppetsArgs(room)...)
	return s.joinedPuppetsFrom(room, rows, err)
}

// joinedPuppetsSQL lists a room's joined members in our namespace. Every
// message asks: the database narrows a large room's members to ours,
// rather than sending them all.
const joinedPuppetsSQL = `SELECT user_id FROM room_member
	WHERE room_id = $1 AND membership = 'join' AND (starts_with(user_id, $2) OR user_id = $3)`

func (s *Service) joinedPuppetsArgs(room id.RoomID) []any {
	return []any{room, s.cfg.Puppets.UserIDPrefix(), s.cfg.Puppets.BotID()}
}

// joinedPuppetsFrom reads joinedPuppetsSQL's result.
func (s *Service) joinedPuppetsFrom(room id.RoomID, rows pgx.Rows, err error) ([]id.UserID, error) {
	if err != nil {
		return nil, fmt.Errorf("joined puppets of %s: %w", room, err)
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("joined puppets of %s: %w", room, err)
	}
	var out []id.UserID
	for _, u := range users {
		if s.cfg.Puppets.Owns(id.UserID(u)) {
			out = append(out, id.UserID(u))
		}
	}
	return out, nil
}

// toDeviceHandler takes Welcomes to our devices onto their room's queue.
type toDeviceHandler struct{ s *Service }

func (h toDeviceHandler) ToDevice(ctx context.Context, w *inbound.Work, ev inbound.ToDeviceEvent) error {
	s := h.s
	if ev.Type != EncryptedType {
		return nil
	}
	var probe struct {
		Algorithm string `json:"algorithm"`
	}
	if json.Unmarshal(ev.Content, &probe) != nil || !strings.HasPrefix(probe.Algorithm, welcomePrefix) {
		return nil
	}
	wel, err := ParseWelcome(ev.Content)
	if err != nil {
		w.Count(s.metrics.MalformedEvents.WithLabelValues("welcome"), 1)
		s.cfg.Log.Warn().Err(err).Stringer("sender", ev.Sender).Stringer("to_device", ev.ToDeviceID).Msg("Malformed Welcome refused")
		return nil
	}
	if !s.cfg.Puppets.Owns(ev.ToUserID) {
		return nil
	}
	payload, err := json.Marshal(welcomeItemPayload{ToUser: ev.ToUserID, ToDevice: ev.ToDeviceID, Sender: ev.Sender, Content: ev.Content})
	if err != nil {
		return err
	}
	room := id.RoomID(wel.RoomID)
	_, err = w.Out.AddItem(ctx, database.Item{Queue: roomQueue(room), Kind: kindWelcome, RoomID: wel.RoomID,
		EventID: wel.Commit.EventID, Payload: payload})
	return err
}

type welcomeItemPayload struct {
	ToUser   id.UserID       `json:"to_user"`
	ToDevice id.DeviceID     `json:"to_device"`
	Sender   id.UserID       `json:"sender"`
	Content  json.RawMessage `json:"content"`
}

// welcomeItem applies a Welcome on its room's queue.
type welcomeItem struct{ s *Service }

func (h welcomeItem) Item(ctx context.Context, w *inbound.Work, it database.Item) error {
	var p welcomeItemPayload
	if err := json.Unmarshal(it.Payload, &p); err != nil {
		return fmt.Errorf("%w: welcome item: %v", inbound.ErrPermanent, err)
	}
	wel, err := ParseWelcome(p.Content)
	if err != nil {
		return fmt.Errorf("%w: welcome item: %v", inbound.ErrPermanent, err)
	}
	return h.s.welcome(ctx, w, wel, keys.Device{UserID: p.ToUser, DeviceID: p.ToDevice}, p.Sender)
}

// deviceListHandler drops a user's cached device list and asks the rooms
// the user is in to reconcile.
type deviceListHandler struct{ s *Service }

func (h deviceListHandler) DeviceList(ctx context.Context, w *inbound.Work, c inbound.DeviceListChange) error {
	if c.Left {
		_, err := w.Q.Exec(ctx, `DELETE FROM user_mls_devices WHERE user_id = $1`, c.UserID)
		return err
	}
	return h.s.devicesChanged(ctx, w.Q, w.Out, c.UserID)
}

// reconcileItem runs a room's reconciliation on its queue.
type reconcileItem struct{ s *Service }

func (h reconcileItem) Item(ctx context.Context, w *inbound.Work, it database.Item) error {
	room := id.RoomID(it.RoomID)
	if err := inbound.CheckID("room id", it.RoomID, '!'); err != nil {
		return fmt.Errorf("%w: reconcile item: %v", inbound.ErrPermanent, err)
	}
	state, dmls, err := isDMLS(ctx, w.Q, room)
	if err != nil || !dmls || state != "active" {
		return err
	}
	later, err := h.s.reconcileLater(ctx, w, room, it)
	if err != nil || later {
		return err
	}
	return h.s.reconcile(ctx, w, room, reconcileReason{at: it.CreatedAt})
}

// reconcileCoalesce is how soon after a room's last reconciliation a
// reconcile item leaves its work to another queued behind it.
const reconcileCoalesce = 2 * time.Second

// reconcileLater reports whether reconcile item it can leave the room's
// reconciliation to a later reconcile item of the room's queue: one is
// queued, and the room was reconciled less than reconcileCoalesce ago.
//
// A membership change with events queued behind it leaves its commit to
// a reconcile item after them (reconcileAfter), and so does a device
// list change. While a room fills up, changes keep arriving: the last
// queued item was rarely a reconcile, so nearly every change queued one,
// and each made a commit of the few changes since the one before. In a
// tree only its committer updates a commit encrypts to every leaf: at
// 2,000 members the service made 985 commits for its first 1,520
// invitations and fell further behind. The time bound keeps a steady
// stream from putting the commit off for ever: the room is reconciled at
// least every reconcileCoalesce while its reconcile items run.
func (s *Service) reconcileLater(ctx context.Context, w *inbound.Work, room id.RoomID, it database.Item) (bool, error) {
	last, ok := s.reconciled.last(room)
	if !ok || s.now().Sub(last) >= reconcileCoalesce {
		return false, nil
	}
	later, err := database.KindQueuedAfter(ctx, w.Q, it.Queue, it.Seq, kindReconcile)
	if err != nil || !later {
		return false, err
	}
	w.Count(s.metrics.ReconcilesCoalesced, 1)
	return true, nil
}

// commitTimer is a waiting committer's grace period ending.
type commitTimer struct{ s *Service }

func (t commitTimer) Timer(ctx context.Context, w *inbound.Work, timer database.Timer) (time.Time, error) {
	room := id.RoomID(timer.Key)
	// This run's row goes first, so that what the reconciliation schedules
	// is a new row: rescheduling the running timer "at the earliest" would
	// keep its past due time, and finishing the run would delete it.
	if err := database.CancelTimer(ctx, w.Q, timerCommit, timer.Key); err != nil {
		return time.Time{}, err
	}
	state, dmls, err := isDMLS(ctx, w.Q, room)
	if err != nil || !dmls || state != "active" {
		return time.Time{}, err
	}
	return time.Time{}, t.s.reconcile(ctx, w, room, reconcileReason{timer: true, at: timer.DueAt})
}

// reconcileReason says why a room reconciles, for the committer rule and
// latency metrics.
type reconcileReason struct {
	event  string    // the membership event, if any
	timer  bool      // a waiting committer's grace period ended
	commit bool      // another device's commit was applied
	at     time.Time // when the cause was stored
}
