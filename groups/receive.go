package groups

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// encryptedEvent handles an m.room.encrypted room event of a DMLS room: a
// commit (applied once for all our devices) or an application message
// (decrypted once and delivered to every puppet of ours joined in the
// room). Anything malformed or refused is logged and counted, and the
// room goes on.
func (s *Service) encryptedEvent(ctx context.Context, w *inbound.Work, ev inbound.RoomEvent) error {
	r, err := s.loadRoom(ctx, w.Q, ev.RoomID)
	if err != nil || r == nil {
		return err
	}
	e, err := ParseEncrypted(ev.Content)
	if err != nil {
		w.Count(s.metrics.MalformedEvents.WithLabelValues("room_event"), 1)
		s.cfg.Log.Warn().Err(err).Stringer("room_id", ev.RoomID).Stringer("event_id", ev.EventID).Stringer("sender", ev.Sender).
			Msg("Malformed DMLS event refused")
		return nil
	}
	if !s.supported(e.Algorithm) {
		w.Count(s.metrics.MalformedEvents.WithLabelValues("algorithm"), 1)
		return nil
	}
	if err := s.checkHole(ctx, w, r, ev, e.Commit != nil); err != nil {
		return err
	}
	if err := s.applyEncrypted(ctx, w, r, ev, e); err != nil {
		return err
	}
	return s.saveRoom(ctx, w, r)
}

// applyEncrypted applies a parsed DMLS event of the loaded room, from a
// transaction, from waiting, or from a hole in the timeline: a commit
// (downloaded first if it was offloaded) or a message.
func (s *Service) applyEncrypted(ctx context.Context, w *inbound.Work, r *room, ev inbound.RoomEvent, e *Encrypted) error {
	if e.Commit == nil {
		return s.receiveMessage(ctx, w, r, ev, e)
	}
	if r.held() {
		if ok, err := s.fetchCommit(ctx, r, eventRef{ev.EventID, ev.Sender}, e); !ok || err != nil {
			return err
		}
	}
	return s.applyCommit(ctx, w, r, ev, e)
}

// applyCommit applies a commit event through the rules of package epochs.
func (s *Service) applyCommit(ctx context.Context, w *inbound.Work, r *room, ev inbound.RoomEvent, e *Encrypted) error {
	c := epochs.Commit{Message: e.Ciphertext, Base: e.Epoch, Epoch: e.Commit.Next, Number: e.Commit.NextNumber,
		Resolves: e.Commit.DMLSResolv, Creator: e.Commit.Sender, EventID: string(ev.EventID)}
	log := s.cfg.Log.With().Stringer("room_id", r.id).Stringer("event_id", ev.EventID).Stringer("sender", ev.Sender).Logger()
	if string(ev.Sender) != c.Creator.UserID {
		w.Count(s.metrics.CommitsRejected.WithLabelValues("sender"), 1)
		log.Warn().Str("claimed", c.Creator.String()).Msg("Commit refused: its device is not the event's sender's")
		return nil
	}
	if !r.held() {
		// We hold no epoch of this room yet (a Welcome for one of ours
		// may be on its way): the commit waits like a message would.
		return s.wait(ctx, w, r, ev, e.Epoch, true)
	}
	ours := r.ours()
	var as keys.Device
	if len(ours) > 0 {
		as = toKeys(ours[0])
	}
	atCommit, err := s.roomView(ctx, w.Q, r.id, as)
	if err != nil {
		return err
	}
	atBase := atCommit
	if n, ok := r.node(c.Base); ok && n.CommitEvent != "" {
		if m, known, err := membersAt(ctx, w.Q, r.id, n.CommitEvent); err != nil {
			return err
		} else if known {
			atBase = epochs.Room{Members: m, Devices: atCommit.Devices}
		}
	}
	heads := len(r.m.Graph().Heads())
	next, err := r.m.ApplyChecked(c, s.membershipCheck(ctx, r, c, as, atCommit, atBase), s.now())
	var rej *epochs.Rejection
	switch {
	case err == nil:
	case errors.Is(err, epochs.ErrDuplicateCommit):
		return s.checkOwnCommit(ctx, w, r, c, as, atCommit, atBase)
	case errors.Is(err, epochs.ErrUnknownEpoch):
		if err := s.wait(ctx, w, r, ev, c.Base, true); err != nil {
			return err
		}
		return s.backfill(ctx, w, r, c.Base, e.CommitEvent)
	case errors.As(err, &rej):
		w.Count(s.metrics.CommitsRejected.WithLabelValues(rejectionLabel(rej)), 1)
		log.Warn().Err(err).Msg("Commit refused by the room's membership")
		return nil
	case errors.Is(err, epochs.ErrRemoved):
		log.Info().Msg("Commit removes our devices on its branch")
		return s.reconcileLoaded(ctx, w, r, reconcileReason{event: string(ev.EventID), at: w.Item.CreatedAt})
	case errors.Is(err, epochs.ErrBeforeRetained):
		// History from before our devices joined (paged back with the
		// timeline) or of epochs retention dropped: no news, no refusal.
		log.Debug().Err(err).Msg("Commit older than every epoch we hold: skipped")
		return nil
	case errors.Is(err, epochs.ErrParentNotRetained), errors.Is(err, epochs.ErrInvalidCommit):
		w.Count(s.metrics.CommitsRejected.WithLabelValues(commitErrorLabel(err)), 1)
		log.Warn().Err(err).Msg("Commit refused")
		return nil
	default:
		return errf(r.id, "apply commit %s: %w", ev.EventID, err)
	}
	w.Count(s.metrics.CommitsApplied, 1)
	if len(c.Resolves) > 0 {
		w.Count(s.metrics.ForksResolved, 1)
	}
	if now := len(r.m.Graph().Heads()); now > 1 && now > heads {
		w.Count(s.metrics.ForksSeen, 1)
	}
	to, err := s.joinedPuppets(ctx, w.Q, r.id)
	if err != nil {
		return err
	}
	if err := s.mlsState(ctx, w, r, to, ev.EventID, ev.Sender, map[string]any{"change": "commit", "epoch": c.Number,
		"dmls_epoch": next.String(), "creator": c.Creator.String(), "resolves": len(c.Resolves)}); err != nil {
		return err
	}
	if err := s.replayWaiting(ctx, w, r, next); err != nil {
		return err
	}
	return s.reconcileLoaded(ctx, w, r, reconcileReason{commit: true, at: w.Item.CreatedAt})
}

// membershipCheck checks a commit against the room's membership
// (epochs.CheckCommit): first as events reached us, atCommit being the
// membership now, on the room's queue, and atBase at the base's
// commit_event in that order. Before refusing, it asks the homeserver for
// the membership at the commit's event and at the base's in the room's
// graph, and decides by that: a commit made on one side of a partition
// reaches the other side after the membership changes made there
// meanwhile, which its committer could not have seen, and the order of
// arrival would refuse it for leaving in a device of a user who left
// (ErrStaleMember) while every member on the committer's side applied it.
// The graph gives every member the same answer. With no puppet of ours to
// ask as, or no answer, the order of arrival decides.
func (s *Service) membershipCheck(ctx context.Context, r *room, c epochs.Commit, as keys.Device,
	atCommit, atBase epochs.Room) func(epochs.CommitEffect) error {
	return func(effect epochs.CommitEffect) error {
		_, err := s.checkMembership(ctx, r, c, as, atCommit, atBase, effect)
		return err
	}
}

// checkMembership is membershipCheck's decision on one commit's effect;
// byGraph reports whether a refusal came from the room's graph, which
// every member reads alike, rather than from the order events arrived in.
func (s *Service) checkMembership(ctx context.Context, r *room, c epochs.Commit, as keys.Device,
	atCommit, atBase epochs.Room, effect epochs.CommitEffect) (byGraph bool, err error) {
	err = epochs.CheckCommit(effect, atCommit, atBase)
	var rej *epochs.Rejection
	if !errors.As(err, &rej) || as.UserID == "" || c.EventID == "" {
		return false, err
	}
	log := s.cfg.Log.With().Stringer("room_id", r.id).Str("event_id", c.EventID).Str("by_arrival", err.Error()).Logger()
	graphCommit, graphBase := atCommit, atBase
	m, gerr := s.membersInGraph(ctx, as.UserID, r.id, c.EventID)
	if gerr == nil {
		graphCommit = epochs.Room{Members: m, Devices: atCommit.Devices}
		if n, ok := r.node(c.Base); ok && n.CommitEvent != "" {
			if m, gerr = s.membersInGraph(ctx, as.UserID, r.id, n.CommitEvent); gerr == nil {
				graphBase = epochs.Room{Members: m, Devices: atBase.Devices}
			}
		}
	}
	if gerr != nil {
		s.metrics.GraphRechecks.WithLabelValues("failed").Inc()
		log.Warn().Err(gerr).Msg("Could not read the room's membership at the commit in the room's graph; the order events arrived in decides")
		return false, err
	}
	if again := epochs.CheckCommit(effect, graphCommit, graphBase); again != nil {
		// Typically a commit its committer made before its service
		// heard of a membership change that its homeserver already
		// had: the commit's event comes after the change in the graph.
		s.metrics.GraphRechecks.WithLabelValues("refused").Inc()
		log.Info().Msg("The membership at the commit in the room's graph refuses it too")
		return true, again
	}
	s.metrics.GraphRechecks.WithLabelValues("accepted").Inc()
	log.Info().Msg("Commit accepted by the membership at its event in the room's graph (the order events arrived in would refuse it)")
	return false, nil
}

// checkOwnCommit checks the event of a commit that one of our devices
// made, once it comes back from the homeserver, exactly as every other
// member checks it (membershipCheck), and withdraws the commit if the
// room's graph refuses it (epochs.Member.Withdraw). Our device adopted
// the commit when it made it, from the room as our service had seen it
// by then; its homeserver may already have placed a leave before the
// commit's event. The others then refuse the commit and everything built
// on it, and without this check we would never learn that they did: the
// room would stay split for good (seed 4 of TestFederatedDMLS). Only the
// graph's answer withdraws: the order events arrived in is ours alone, and
// withdrawing a commit that the others applied would split the room too.
// The committer rule then runs again on the base. A commit the room
// accepts is confirmed (epochs.Member.Confirm): it is never checked or
// withdrawn again, and retention may then let its base go once our other
// devices hold its epoch.
func (s *Service) checkOwnCommit(ctx context.Context, w *inbound.Work, r *room, c epochs.Commit, as keys.Device,
	atCommit, atBase epochs.Room) error {
	n, ok := r.node(c.Epoch)
	if !ok || !n.Retained || n.Echoed || n.Parent != c.Base || !slices.Contains(r.m.Ours(), n.Creator) {
		return nil
	}
	effect, err := r.m.Effect(c.Epoch)
	if err != nil {
		// Its base is gone: nothing to go back to.
		return nil
	}
	byGraph, refused := s.checkMembership(ctx, r, c, as, atCommit, atBase, effect)
	log := s.cfg.Log.With().Stringer("room_id", r.id).Str("event_id", c.EventID).Str("epoch", c.Epoch.String()).Logger()
	switch {
	case refused == nil:
		r.m.Confirm(c.Epoch)
		return nil
	case !byGraph:
		log.Warn().Err(refused).Msg("Our own commit fails the membership rules by the order events arrived in, and the room's graph could not be asked: kept")
		return nil
	}
	gone, err := r.m.Withdraw(c.Epoch)
	if err != nil {
		return errf(r.id, "withdraw our commit %s: %w", c.EventID, err)
	}
	w.Count(s.metrics.OwnCommitsWithdrawn, 1)
	log.Warn().Err(refused).Int("epochs_removed", len(gone)).
		Msg("Our own commit is refused by the membership at its event in the room's graph, as the other members refuse it: withdrawn, committing again from its base")
	return s.reconcileLoaded(ctx, w, r, reconcileReason{commit: true, at: w.Item.CreatedAt})
}

func rejectionLabel(r *epochs.Rejection) string {
	switch {
	case errors.Is(r, epochs.ErrUnauthorisedAdd):
		return "unauthorised_add"
	case errors.Is(r, epochs.ErrStaleMember):
		return "stale_member"
	}
	return "membership"
}

func commitErrorLabel(err error) string {
	if errors.Is(err, epochs.ErrParentNotRetained) {
		return "parent_not_retained"
	}
	return "invalid"
}

// receiveMessage decrypts an application message once for the room and
// delivers it to our joined puppets.
func (s *Service) receiveMessage(ctx context.Context, w *inbound.Work, r *room, ev inbound.RoomEvent, e *Encrypted) error {
	start := time.Now()
	digest := sha256.Sum256(e.Ciphertext)
	to, owns, err := s.messageContext(ctx, w.Q, r.id, [][]byte{digest[:]})
	if err != nil {
		return err
	}
	if to, err = s.recipients(ctx, w.Q, r, e.Epoch, to); err != nil {
		return err
	}
	if own := owns[string(digest[:])]; own != nil {
		if own.resendOf != "" {
			// The echo of a message we sent again (resend): our
			// puppets had the original's.
			return nil
		}
		// Our own message's echo: we cannot decrypt it (the sender's
		// ratchet moved on), but we know what it says.
		if err := s.deliverMessage(ctx, w, r, ev, own.device, own.plaintext, to); err != nil {
			return err
		}
		if r.held() && r.m.Refused(e.Epoch) {
			return s.resend(ctx, w, r, ev, own)
		}
		return nil
	}
	if !r.held() {
		return s.wait(ctx, w, r, ev, e.Epoch, false)
	}
	opened, err := r.m.Open(e.Epoch, e.Ciphertext)
	switch {
	case err == nil:
	case errors.Is(err, epochs.ErrNotHeld):
		// The epoch is one we hold only for what it says about the
		// room (our devices were removed there): not addressed to us.
		w.Count(s.metrics.NotAddressed, 1)
		return nil
	case errors.Is(err, epochs.ErrUnknownEpoch):
		// Our devices may still hold an epoch of the room after their
		// puppets left (the removing commit's epoch is not kept once
		// retention runs): with no puppet of ours joined, the message is
		// for others.
		if len(r.m.Ours()) == 0 || len(to) == 0 {
			w.Count(s.metrics.NotAddressed, 1)
			s.cfg.Log.Info().Stringer("room_id", r.id).Stringer("event_id", ev.EventID).
				Msg("Message of an epoch none of our devices is in: not addressed to us")
			return nil
		}
		if err := s.wait(ctx, w, r, ev, e.Epoch, false); err != nil {
			return err
		}
		return s.backfill(ctx, w, r, e.Epoch, e.CommitEvent)
	case errors.Is(err, epochs.ErrParentNotRetained):
		if len(r.m.Ours()) == 0 || len(to) == 0 {
			w.Count(s.metrics.NotAddressed, 1)
			return nil
		}
		return s.undecryptable(ctx, w, r, ev, "epoch_dropped", to)
	case errors.Is(err, group.ErrReplay):
		// Its key was used: if that was this very event (applied from a
		// hole in the timeline while its transaction was on its way,
		// gap.go), it is a duplicate; else a replay.
		// A message is in its room's log once (before migration 0025, a
		// row of each puppet's own log: asked by the puppets it would go
		// to, so that the unique index on (log_no, event_id, kind)
		// answers). Planned for its values each time (the simple
		// protocol): a generic plan made while the tables were small is
		// a sequential scan.
		users := userStrings(to)
		var delivered bool
		if qerr := w.Q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM room_entry e JOIN room_log r USING (room_no)
				WHERE e.event_id = $2 AND r.room_id = $4)
			OR EXISTS (SELECT 1 FROM delivery_cursor c JOIN delivery d ON d.log_no = c.log_no
				WHERE c.user_id = ANY($1) AND d.event_id = $2 AND d.kind = $3)`,
			pgx.QueryExecModeSimpleProtocol, users, string(ev.EventID), string(KindMessage), string(r.id)).Scan(&delivered); qerr != nil {
			return errf(r.id, "deliveries of %s: %w", ev.EventID, qerr)
		}
		if delivered {
			w.Count(s.metrics.DuplicateEvents, 1)
			return nil
		}
		s.cfg.Log.Warn().Err(err).Stringer("room_id", r.id).Stringer("event_id", ev.EventID).Msg("Message replayed: its key was used by another event")
		return s.undecryptable(ctx, w, r, ev, "replayed", to)
	case errors.Is(err, epochs.ErrLoad):
		// Our storage failed, not the message: the item fails, to be
		// retried and, failing still, parked with the reason, so that
		// the message is there when the state opens again (a key given
		// back to the configuration, a database back up).
		return errf(r.id, "message %s: %w", ev.EventID, err)
	default:
		s.cfg.Log.Warn().Err(err).Stringer("room_id", r.id).Stringer("event_id", ev.EventID).Msg("Message does not decrypt")
		return s.undecryptable(ctx, w, r, ev, "decrypt_failed", to)
	}
	sender := opened.Sender
	if sender.UserID != string(ev.Sender) {
		s.cfg.Log.Warn().Stringer("room_id", r.id).Stringer("event_id", ev.EventID).Str("mls_sender", sender.String()).
			Stringer("sender", ev.Sender).Msg("Message refused: its MLS sender is not the event's sender")
		return s.undecryptable(ctx, w, r, ev, "sender_mismatch", to)
	}
	w.Count(s.metrics.MessagesDecrypt, 1)
	if err := s.deliverMessage(ctx, w, r, ev, id.DeviceID(sender.DeviceID), opened.Plaintext, to); err != nil {
		return err
	}
	s.metrics.DecryptSeconds.Observe(time.Since(start).Seconds())
	if opened.Skipped > 0 {
		return s.fillHole(ctx, w, r, ev, holeSkipped)
	}
	return nil
}

// deliverMessage checks a decrypted plaintext and gives it to puppets.
func (s *Service) deliverMessage(ctx context.Context, w *inbound.Work, r *room, ev inbound.RoomEvent, device id.DeviceID, plain []byte, to []id.UserID) error {
	p, err := ParsePlaintext(plain)
	if err != nil || p.RoomID != string(r.id) {
		if err == nil {
			err = fmt.Errorf("plaintext names room %s", truncate(p.RoomID))
		}
		s.cfg.Log.Warn().Err(err).Stringer("room_id", r.id).Stringer("event_id", ev.EventID).Msg("Decrypted message refused")
		return s.undecryptable(ctx, w, r, ev, "bad_plaintext", to)
	}
	got, err := s.deliver(ctx, w, to, Delivered{RoomID: r.id, EventID: ev.EventID, Kind: KindMessage, Sender: ev.Sender,
		SenderDevice: device, Type: p.Type, Content: p.Content, OriginServerTS: ev.OriginServerTS})
	if err != nil {
		return err
	}
	w.AfterCommit(func() { s.notify.wake(got) })
	return nil
}

func (s *Service) undecryptable(ctx context.Context, w *inbound.Work, r *room, ev inbound.RoomEvent, reason string, to []id.UserID) error {
	w.Count(s.metrics.Undecryptable.WithLabelValues(reason), 1)
	s.cfg.Log.Warn().Stringer("room_id", r.id).Stringer("event_id", ev.EventID).Stringer("sender", ev.Sender).
		Str("reason", reason).Int("puppets", len(to)).Msg("Message undecryptable")
	content, _ := json.Marshal(map[string]string{"reason": reason})
	got, err := s.deliver(ctx, w, to, Delivered{RoomID: r.id, EventID: ev.EventID, Kind: KindUndecryptable,
		Sender: ev.Sender, Type: EncryptedType, Content: content, OriginServerTS: ev.OriginServerTS})
	if err != nil {
		return err
	}
	w.AfterCommit(func() { s.notify.wake(got) })
	return nil
}

// mlsState tells the joined puppets to that the room's MLS state changed
// at event (a commit applied): one entry of the room's log for all of
// them. A log keeps one mls_state entry an event, so a puppet told of it
// already (its device's join, mlsStateJoined) is not told again.
func (s *Service) mlsState(ctx context.Context, w *inbound.Work, r *room, to []id.UserID, event id.EventID, sender id.UserID, what map[string]any) error {
	if len(to) == 0 {
		return nil
	}
	users := userStrings(to)
	// Planned for its values each time (the simple protocol): a generic
	// plan made while the tables were small is a sequential scan.
	rows, err := w.Q.Query(ctx, `SELECT c.user_id FROM delivery_cursor c JOIN delivery d ON d.log_no = c.log_no
		WHERE c.user_id = ANY($1) AND d.event_id = $2 AND d.kind = $3`,
		pgx.QueryExecModeSimpleProtocol, users, string(event), string(KindMLSState))
	if err != nil {
		return errf(r.id, "puppets told of %s: %w", event, err)
	}
	told, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return errf(r.id, "puppets told of %s: %w", event, err)
	}
	if len(told) > 0 {
		to = slices.DeleteFunc(slices.Clone(to), func(u id.UserID) bool { return slices.Contains(told, string(u)) })
	}
	return s.tellState(ctx, w, r, to, false, event, sender, what)
}

// mlsStateJoined tells puppet that its device joined the group by the
// Welcome of the commit event: a row of its own log, unless it was told
// of that commit already (mlsState).
func (s *Service) mlsStateJoined(ctx context.Context, w *inbound.Work, r *room, puppet id.UserID, event id.EventID, sender id.UserID, what map[string]any) error {
	var told bool
	if err := w.Q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM room_entry e JOIN room_log r USING (room_no)
			JOIN delivery_cursor c ON c.user_id = $1
			JOIN delivery_span s ON s.log_no = c.log_no AND s.room_no = e.room_no AND s.first_no <= e.no AND s.first_no + s.n > e.no
			WHERE r.room_id = $2 AND e.event_id = $3 AND e.kind = $4)`,
		string(puppet), string(r.id), string(event), string(KindMLSState)).Scan(&told); err != nil {
		return errf(r.id, "whether %s was told of %s: %w", puppet, event, err)
	}
	if told {
		return nil
	}
	return s.tellState(ctx, w, r, []id.UserID{puppet}, true, event, sender, what)
}

// tellState delivers an mls_state entry to the puppets to: once, in the
// room's log, or (own) as a row of each puppet's own log. A device's join
// is its puppet's own: in the room's log it would be the commit event's
// entry, and the commit's own entry for every joined puppet would then
// be refused as a copy of it.
func (s *Service) tellState(ctx context.Context, w *inbound.Work, r *room, to []id.UserID, own bool, event id.EventID, sender id.UserID, what map[string]any) error {
	if len(to) == 0 {
		return nil
	}
	content, _ := json.Marshal(what)
	d := Delivered{RoomID: r.id, EventID: event, Kind: KindMLSState, Sender: sender,
		Type: "org.mls-appservice.mls_state", Content: content}
	var got []id.UserID
	var err error
	if own {
		got, err = s.deliverEach(ctx, w, userIDs(to), d)
	} else {
		got, err = s.deliver(ctx, w, to, d)
	}
	if err != nil {
		return err
	}
	w.AfterCommit(func() { s.notify.wake(got) })
	return nil
}

// commitWaitFactor is how many times groups.wait a commit waits for its
// base epoch. The base of a commit that comes after one that added a
// device of ours arrives by that device's Welcome, and a homeserver that
// is behind delivers to-device messages minutes after room events (at
// 1,000 puppets joining 100 rooms, up to about three minutes); a device
// that joins from a late Welcome reaches the later epochs only through
// their commits, so a commit dropped at groups.wait left it behind, an
// orphan the room then removed and added again. A message that waits
// costs its reader the wait; a commit that waits costs a row.
const commitWaitFactor = 8

// wait keeps an event that names an epoch we do not hold yet, until that
// epoch arrives or the wait ends (then a message is undecryptable and a
// commit dropped). A commit waits commitWaitFactor times longer.
func (s *Service) wait(ctx context.Context, w *inbound.Work, r *room, ev inbound.RoomEvent, epoch epochs.ID, commit bool) error {
	expires := s.now().Add(s.cfg.Wait)
	if commit {
		expires = s.now().Add(commitWaitFactor * s.cfg.Wait)
	}
	tag, err := w.Q.Exec(ctx, `INSERT INTO dmls_waiting (room_id, event_id, epoch_id, event, expires_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, r.id, ev.EventID, []byte(epoch), []byte(ev.Raw), expires)
	if err != nil {
		return errf(r.id, "keep waiting event %s: %w", ev.EventID, err)
	}
	if tag.RowsAffected() == 1 {
		w.Count(s.metrics.MessagesWaiting, 1)
		s.cfg.Log.Debug().Stringer("room_id", r.id).Stringer("event_id", ev.EventID).Str("epoch", epoch.String()).
			Msg("Event waits for its epoch")
	}
	return database.ScheduleTimer(ctx, w.Q, database.Timer{Kind: timerWait, Key: string(r.id), Queue: roomQueue(r.id),
		DueAt: expires}, database.Earliest)
}

// replayWaiting applies the events that waited for epoch, now held.
func (s *Service) replayWaiting(ctx context.Context, w *inbound.Work, r *room, epoch epochs.ID) error {
	rows, err := w.Q.Query(ctx, `DELETE FROM dmls_waiting WHERE room_id = $1 AND epoch_id = $2 RETURNING event`, r.id, []byte(epoch))
	if err != nil {
		return errf(r.id, "waiting events: %w", err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return errf(r.id, "waiting events: %w", err)
	}
	for _, raw := range raws {
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil {
			continue
		}
		e, err := ParseEncrypted(ev.Content)
		if err != nil {
			continue
		}
		if err := s.applyEncrypted(ctx, w, r, ev, e); err != nil {
			return err
		}
	}
	return nil
}

// dropJoiningCommit takes out of the waiting events the commit that made
// epoch, which a device of ours has just joined by Welcome: the homeserver
// sends the room event before the to-device message, so that commit
// usually arrives first and waits for its base. It is not a rejected
// commit: its epoch came by another way. It is applied now all the same,
// so that the epoch keeps its message: should another device of ours
// enter the base later, it follows into the epoch with it.
func (s *Service) dropJoiningCommit(ctx context.Context, w *inbound.Work, r *room, epoch epochs.ID) error {
	rows, err := w.Q.Query(ctx, `SELECT event_id, event FROM dmls_waiting WHERE room_id = $1`, r.id)
	if err != nil {
		return errf(r.id, "waiting events: %w", err)
	}
	type joining struct {
		ev inbound.RoomEvent
		e  *Encrypted
	}
	var found []joining
	var drop []string
	var eventID string
	var raw []byte
	if _, err := pgx.ForEachRow(rows, []any{&eventID, &raw}, func() error {
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil {
			return nil
		}
		if e, err := ParseEncrypted(ev.Content); err == nil && e.Commit != nil && e.Commit.Next == epoch {
			drop = append(drop, eventID)
			found = append(found, joining{ev, e})
		}
		return nil
	}); err != nil {
		return errf(r.id, "waiting events: %w", err)
	}
	if len(drop) == 0 {
		return nil
	}
	if _, err := w.Q.Exec(ctx, `DELETE FROM dmls_waiting WHERE room_id = $1 AND event_id = ANY($2)`, r.id, drop); err != nil {
		return errf(r.id, "waiting events: %w", err)
	}
	for _, j := range found {
		if err := s.applyCommit(ctx, w, r, j.ev, j.e); err != nil {
			return err
		}
	}
	return nil
}

// waitTimer ends the wait of events whose epoch did not come.
type waitTimer struct{ s *Service }

func (t waitTimer) Timer(ctx context.Context, w *inbound.Work, timer database.Timer) (time.Time, error) {
	s := t.s
	roomID := id.RoomID(timer.Key)
	r, err := s.loadRoom(ctx, w.Q, roomID)
	if err != nil || r == nil {
		return time.Time{}, err
	}
	// A last walk back before the wait ends: the homeserver may hold
	// now what it lacked when the events arrived.
	if r.held() {
		if err := s.backfillWaiting(ctx, w, r); err != nil {
			return time.Time{}, err
		}
		if err := s.saveRoom(ctx, w, r); err != nil {
			return time.Time{}, err
		}
	}
	rows, err := w.Q.Query(ctx, `DELETE FROM dmls_waiting WHERE room_id = $1 AND expires_at <= $2 RETURNING event`, roomID, s.now())
	if err != nil {
		return time.Time{}, errf(roomID, "expire waiting events: %w", err)
	}
	raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return time.Time{}, errf(roomID, "expire waiting events: %w", err)
	}
	to, err := s.joinedPuppets(ctx, w.Q, roomID)
	if err != nil {
		return time.Time{}, err
	}
	for _, raw := range raws {
		ev, err := inbound.ParseRoomEvent(raw)
		if err != nil {
			continue
		}
		e, err := ParseEncrypted(ev.Content)
		if err != nil {
			continue
		}
		if e.Commit != nil {
			// A commit whose base never came: made before any device of
			// ours was in the group (its branch reaches us by Welcome),
			// or on a branch we never saw. Nothing to deliver.
			w.Count(s.metrics.CommitsRejected.WithLabelValues("base_never_arrived"), 1)
			s.cfg.Log.Info().Stringer("room_id", roomID).Stringer("event_id", ev.EventID).Msg("Commit dropped: its base epoch never came")
			continue
		}
		if r.m != nil {
			if n, ok := r.node(e.Epoch); ok && !n.Retained && len(r.m.Holders(e.Epoch)) == 0 {
				// An epoch we know only from history: sent before any
				// device of ours was in the group.
				w.Count(s.metrics.NotAddressed, 1)
				continue
			}
		}
		if err := s.undecryptable(ctx, w, r, ev, "epoch_never_arrived", to); err != nil {
			return time.Time{}, err
		}
	}
	var next *time.Time
	if err := w.Q.QueryRow(ctx, `SELECT min(expires_at) FROM dmls_waiting WHERE room_id = $1`, roomID).Scan(&next); err != nil {
		return time.Time{}, errf(roomID, "waiting events: %w", err)
	}
	if next == nil {
		return time.Time{}, nil
	}
	return *next, nil
}

// sent is one of our messages, by its ciphertext's digest.
type sent struct {
	device    id.DeviceID
	plaintext []byte
	// resendOf is the event this message sent again (resend), if any.
	resendOf id.EventID
}

// resend sends again, in the room's current base epoch, our message ev
// whose epoch our device withdrew (epochs.Member.Withdraw): the room
// refused the commit that made that epoch, so no one else can read the
// message. Our puppets had it from its echo; the copy's echo is not
// delivered to them again (sent.resendOf). Others see a new event with
// the same content.
func (s *Service) resend(ctx context.Context, w *inbound.Work, r *room, ev inbound.RoomEvent, own *sent) error {
	log := s.cfg.Log.With().Stringer("room_id", r.id).Stringer("event_id", ev.EventID).Stringer("sender", ev.Sender).Logger()
	dev, ok := senderDevice(r, ev.Sender, own.device)
	if !ok {
		dev, ok = senderDevice(r, ev.Sender, "")
	}
	if !ok {
		w.Count(s.metrics.MessagesResent.WithLabelValues("no_device"), 1)
		log.Warn().Msg("Our message was sent in an epoch we withdrew, and its puppet has no device in the group to send it again: lost to the others")
		return nil
	}
	txnID, err := s.queueMessage(ctx, w.Q, w.Out, r, ev.Sender, dev, own.plaintext, ev.EventID)
	if err != nil {
		return err
	}
	w.Count(s.metrics.MessagesResent.WithLabelValues("sent"), 1)
	log.Info().Str("outbox_txn_id", txnID).Msg("Our message was sent in an epoch we withdrew: sent again in the current epoch")
	return nil
}

// recipients returns the puppets of ours that a message of epoch goes
// to: those joined to the room now (joined, from messageContext), and
// those that have left it but whose device the epoch holds. A message and
// a leave can be concurrent in the room's graph: the sender, not having
// seen the leave, encrypted to the departed puppet's device, and the
// message reached us only after the leave (late, or from a hole after a
// partition). In the room's state at the message the puppet was joined,
// and its device can read it; delivering only to the puppets joined when
// the message arrived lost it for that puppet (soak seed 11). An invited
// puppet, or one whose device the epoch does not hold, gets no more than
// before.
func (s *Service) recipients(ctx context.Context, q database.Querier, r *room, epoch epochs.ID, joined []id.UserID) ([]id.UserID, error) {
	gone := departed(r, epoch, joined)
	if len(gone) == 0 {
		return joined, nil
	}
	rows, err := q.Query(ctx, `SELECT user_id FROM room_member WHERE room_id = $1 AND user_id = ANY($2) AND membership IN ('leave', 'ban')`, r.id, gone)
	if err != nil {
		return nil, errf(r.id, "departed puppets: %w", err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, errf(r.id, "departed puppets: %w", err)
	}
	to := slices.Clone(joined)
	for _, u := range left {
		to = append(to, id.UserID(u))
	}
	return to, nil
}

// departed lists the users of our devices that hold epoch but are not
// among joined: puppets that may have left (recipients).
func departed(r *room, epoch epochs.ID, joined []id.UserID) []string {
	if r.m == nil {
		return nil
	}
	holders := r.m.Holders(epoch)
	if len(holders) == 0 {
		return nil
	}
	in := userSet(joined)
	var gone []string
	for _, d := range holders {
		if u := id.UserID(d.UserID); !in[u] {
			in[u] = true // once per user
			gone = append(gone, d.UserID)
		}
	}
	return gone
}

// userSet returns users as a set.
func userSet(users []id.UserID) map[id.UserID]bool {
	in := make(map[id.UserID]bool, len(users))
	for _, u := range users {
		in[u] = true
	}
	return in
}

// messageContext reads in one round trip what received messages need:
// our puppets joined in room (joinedPuppets), and which of the
// ciphertext digests are the echoes of our own messages, with what we
// said (keyed by the digest as a string). A run of messages asks once for
// all of them (run.go).
func (s *Service) messageContext(ctx context.Context, q database.Querier, room id.RoomID, digests [][]byte) ([]id.UserID, map[string]*sent, error) {
	var b pgx.Batch
	b.Queue(joinedPuppetsSQL, s.joinedPuppetsArgs(room)...)
	b.Queue(`SELECT digest, device_id, plaintext, coalesce(resend_of, '') FROM dmls_sent WHERE digest = ANY($1)`, digests)
	br := q.SendBatch(ctx, &b)
	defer br.Close()
	rows, err := br.Query()
	to, err := s.joinedPuppetsFrom(room, rows, err)
	if err != nil {
		return nil, nil, err
	}
	rows, err = br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("read own messages: %w", err)
	}
	own := map[string]*sent{}
	var digest, sealed []byte
	var dev, resendOf string
	_, err = pgx.ForEachRow(rows, []any{&digest, &dev, &sealed, &resendOf}, func() error {
		plain, err := s.cfg.Sealer.Open(purposeSent, sentRow(digest), sealed)
		if err != nil {
			return err
		}
		own[string(digest)] = &sent{device: id.DeviceID(dev), plaintext: plain, resendOf: id.EventID(resendOf)}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read own messages: %w", err)
	}
	return to, own, br.Close()
}

// welcome joins our device dev to the room's group from a Welcome.
func (s *Service) welcome(ctx context.Context, w *inbound.Work, wel *Welcome, dev keys.Device, sender id.UserID) error {
	log := s.cfg.Log.With().Str("room_id", wel.RoomID).Stringer("device", dev).Stringer("sender", sender).Logger()
	refuse := func(reason string, err error) error {
		w.Count(s.metrics.WelcomesRefused.WithLabelValues(reason), 1)
		log.Warn().Err(err).Str("reason", reason).Msg("Welcome refused")
		return nil
	}
	if string(sender) != wel.Commit.Creator.UserID {
		return refuse("sender", fmt.Errorf("sent by %s, names creator %s", sender, wel.Commit.Creator))
	}
	if !s.supported(keys.Prefix + "." + wel.Algorithm[len(welcomePrefix):]) {
		return refuse("algorithm", fmt.Errorf("algorithm %q", truncate(wel.Algorithm)))
	}
	roomID := id.RoomID(wel.RoomID)
	if err := s.recordRoom(ctx, w.Q, roomID, "", ""); err != nil {
		return err
	}
	r, err := s.loadRoom(ctx, w.Q, roomID)
	if err != nil {
		return err
	}
	if r.m != nil && slices.Contains(r.m.Holders(wel.Commit.Epoch), fromKeys(dev)) {
		// The device joined already, when our own commit was made
		// (commitNow) or from an earlier delivery of this one.
		return nil
	}
	if r.m != nil && s.cfg.Puppets.Owns(sender) && slices.Contains(r.m.Ours(), fromKeys(dev)) {
		// Our own commit added the device, which joined when the commit
		// was made (commitNow) and has moved on since: a Welcome sent
		// before our devices stopped getting one, or to a device whose
		// KeyPackage was not found then; no need to download or open it.
		log.Debug().Msg("Duplicate of a Welcome our device already joined from")
		return nil
	}
	if ok, err := s.fetchWelcome(ctx, wel, dev); !ok || err != nil {
		return err
	}
	joined, err := s.joinDevice(ctx, w, r, dev, wel.Message, wel.Commit)
	var refusal *welcomeRefusal
	switch {
	case errors.As(err, &refusal) && refusal.reason == "unknown_key_package" && s.cfg.Puppets.Owns(sender):
		// Our own commit added the device, which joined and used up the
		// KeyPackage when the commit was made (commitNow): a duplicate,
		// arriving after the device moved on.
		log.Debug().Msg("Duplicate of a Welcome our device already joined from")
		return nil
	case errors.As(err, &refusal):
		return refuse(refusal.reason, refusal.err)
	case errors.Is(err, epochs.ErrDuplicateCommit):
		return s.saveRoom(ctx, w, r)
	case err != nil:
		return err
	}
	r.state = "active"
	w.Count(s.metrics.WelcomesJoined, 1)
	log.Info().Uint64("epoch", wel.Commit.Number).Msg("Joined the room's MLS group")
	// Fetch as a puppet of ours that has joined: one only invited (as
	// the Welcome's device usually is still) cannot read the room, and
	// with none joined the history is learnt when the first joins
	// (learnHistoryAsJoined); asking now only failed (61 warnings for 100
	// rooms filling up in the load run).
	readers, err := s.joinedPuppets(ctx, w.Q, roomID)
	if err != nil {
		return err
	}
	if len(readers) > 0 {
		as := dev.UserID
		if !slices.Contains(readers, as) {
			slices.Sort(readers)
			as = readers[0]
		}
		if err := s.learnHistory(ctx, r, as); err != nil {
			log.Warn().Err(err).Msg("Could not learn the branch's history; base selection may differ from older members' until it is known")
		}
	}
	// Our device's join is news to its own puppet (if joined: logs are
	// for joined puppets). Told to every joined puppet, it was written
	// once for each of the commit's devices, and taken only the first
	// time (a log keeps one mls_state entry an event): in a room of n
	// puppets, a commit adding k of our devices tried k·n entries.
	if slices.Contains(readers, dev.UserID) {
		if err := s.mlsStateJoined(ctx, w, r, dev.UserID, id.EventID(wel.Commit.EventID), sender, map[string]any{"change": "joined",
			"device": dev.String(), "epoch": wel.Commit.Number, "dmls_epoch": joined.String()}); err != nil {
			return err
		}
	}
	if err := s.replayWaiting(ctx, w, r, joined); err != nil {
		return err
	}
	if err := s.dropJoiningCommit(ctx, w, r, joined); err != nil {
		return err
	}
	if err := s.backfillWaiting(ctx, w, r); err != nil {
		return err
	}
	if err := s.reconcileLoaded(ctx, w, r, reconcileReason{at: w.Item.CreatedAt}); err != nil {
		return err
	}
	return s.saveRoom(ctx, w, r)
}

// welcomeRefusal is why a Welcome cannot join our device (it is logged,
// counted and dropped, never retried).
type welcomeRefusal struct {
	reason string
	err    error
}

func (e *welcomeRefusal) Error() string {
	return "welcome refused (" + e.reason + "): " + fmt.Sprint(e.err)
}

// joinDevice joins our device dev to the loaded room from a Welcome
// message made by commit c, with the KeyPackage of dev that the Welcome
// names, and consumes that KeyPackage. ErrDuplicateCommit: dev holds the
// epoch already (the KeyPackage is consumed all the same).
func (s *Service) joinDevice(ctx context.Context, w *inbound.Work, r *room, dev keys.Device, welcome []byte, c epochs.Commit) (epochs.ID, error) {
	msg, err := message.ParseMLSMessage(welcome)
	if err != nil || msg.Welcome == nil {
		return "", &welcomeRefusal{"malformed", err}
	}
	refs := make([][]byte, len(msg.Welcome.Secrets))
	for i, gs := range msg.Welcome.Secrets {
		refs[i] = gs.NewMember
	}
	ref, bundle, err := s.cfg.Keys.FindKeyPackage(ctx, w.Q, dev, refs)
	if errors.Is(err, keys.ErrUnknownKeyPackage) {
		return "", &welcomeRefusal{"unknown_key_package", errors.New("no KeyPackage of the device is in the Welcome")}
	}
	if err != nil {
		return "", err
	}
	if r.m == nil {
		r.m = epochs.NewJoinedMember(s.groupConfig(), s.cfg.Policy)
	}
	joined, err := r.m.Join(fromKeys(dev), welcome, bundle, c, s.now())
	switch {
	case err == nil:
	case errors.Is(err, epochs.ErrDuplicateCommit):
		if err := s.cfg.Keys.Consume(ctx, w, dev, ref); err != nil {
			return "", err
		}
		return joined, err
	case errors.Is(err, epochs.ErrRefusedEpoch):
		// Its commit failed the membership rules here, as at every
		// member that saw it: typically one its committer withdrew.
		return "", &welcomeRefusal{"commit_refused", err}
	case errors.Is(err, epochs.ErrLoad):
		return "", err // our storage's fault: the item fails, the Welcome is kept
	default:
		return "", &welcomeRefusal{"invalid", err}
	}
	if err := s.cfg.Keys.Consume(ctx, w, dev, ref); err != nil {
		return "", err
	}
	if err := s.orphansSettled(ctx, w.Q, r.id, []epochs.Device{fromKeys(dev)}); err != nil {
		return "", err
	}
	return joined, nil
}
