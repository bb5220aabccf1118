package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/message"
)

// HookName is the outbox hook through which our commits learn their
// event ids (register the Service under it with the outbox sender).
const HookName = "groups"

// createGroup starts the room's group at the create event, held by our
// device dev (the room's first epoch, whose commit_event is the create
// event). A room that has a group already is left alone (a replayed
// create event).
func (s *Service) createGroup(ctx context.Context, w *inbound.Work, roomID id.RoomID, dev keys.Device, createEvent string) error {
	r, err := s.loadRoom(ctx, w.Q, roomID)
	if err != nil || r == nil {
		return err
	}
	if r.held() {
		return nil
	}
	sig, err := s.cfg.Keys.SignatureKey(ctx, w.Q, dev)
	if errors.Is(err, keys.ErrNoIdentity) {
		s.cfg.Log.Error().Stringer("room_id", roomID).Stringer("device", dev).Msg("Room created by a device without an MLS identity; no group")
		return nil
	}
	if err != nil {
		return err
	}
	kp, err := group.NewKeyPackage(dev.Credential(), sig, nil)
	if err != nil {
		return errf(roomID, "creator's KeyPackage: %w", err)
	}
	g, err := group.Create(kp, []byte(roomID), nil, s.groupConfig())
	if err != nil {
		return errf(roomID, "create group: %w", err)
	}
	if r.m, err = epochs.NewMember(fromKeys(dev), g, createEvent, s.cfg.Policy, s.now()); err != nil {
		return errf(roomID, "create group: %w", err)
	}
	r.state = "active"
	if err := s.saveRoom(ctx, w, r); err != nil {
		return err
	}
	s.cfg.Log.Info().Stringer("room_id", roomID).Stringer("device", dev).Msg("Created the room's MLS group")
	return s.reconcileLoaded(ctx, w, r, reconcileReason{event: createEvent, at: w.Item.CreatedAt})
}

// reconcile brings the room's group towards its membership (epochs,
// "Committer"): if the base lacks joined or invited users' devices, holds
// departed ones, or a fork is open, the device of ours that the committer
// rule picks commits now, or a timer is set for its turn.
func (s *Service) reconcile(ctx context.Context, w *inbound.Work, roomID id.RoomID, why reconcileReason) error {
	r, err := s.loadRoom(ctx, w.Q, roomID)
	if err != nil || r == nil || r.state != "active" {
		return err
	}
	if err := s.reconcileLoaded(ctx, w, r, why); err != nil {
		return err
	}
	return s.saveRoom(ctx, w, r)
}

func (s *Service) reconcileLoaded(ctx context.Context, w *inbound.Work, r *room, why reconcileReason) error {
	reconciledAt := s.now() // for reconcileLater
	w.AfterCommit(func() { s.reconciled.mark(r.id, reconciledAt) })
	ours := r.ours()
	if len(ours) == 0 {
		return nil
	}
	as := toKeys(ours[0])
	view, err := s.roomView(ctx, w.Q, r.id, as)
	if err != nil {
		return err
	}
	var found []string
	for user, st := range view.Members {
		if st != epochs.Join && st != epochs.Invite {
			continue
		}
		listed, known := view.Devices[user]
		switch {
		case !known:
			// Their homeserver did not answer: neither left out nor
			// found until it does.
		case len(listed) == 0:
			if err := s.leftOut(ctx, w, r.id, user, "no MLS device"); err != nil {
				return err
			}
		default:
			found = append(found, user)
		}
	}
	// A user left out for having no device who has one now (a remote
	// user whose keys were not on their homeserver yet when invited: the
	// membership event of their join, or a device-list change, brought us
	// here and the list was fetched afresh) is in the plan again: drop the
	// record, so that the room no longer reports them without MLS, and a
	// later loss of their devices is reported again.
	if len(found) > 0 {
		if _, err := w.Q.Exec(ctx, `DELETE FROM dmls_left_out WHERE room_id = $1 AND user_id = ANY($2)`, r.id, found); err != nil {
			return errf(r.id, "clear left out users: %w", err)
		}
	}
	orphansDue, err := s.recoverOrphans(ctx, w.Q, r)
	if err != nil {
		return err
	}
	plan, forked, waiting, err := s.plan(ctx, w.Q, r, view)
	if err != nil {
		return err
	}
	if plan.Empty() && !forked {
		switch {
		case waiting:
			// Look again shortly, in case the homeserver does not tell us
			// about our own device's upload.
			return database.ScheduleTimer(ctx, w.Q, database.Timer{Kind: timerCommit, Key: string(r.id), Queue: roomQueue(r.id),
				DueAt: s.now().Add(uploadRecheck)}, database.Earliest)
		}
		// Come back when an orphaned device's wait ends, or when a device
		// left out for want of a KeyPackage may claim one again.
		_, retry, err := s.leftOutDevices(ctx, w.Q, r.id)
		if err != nil {
			return err
		}
		due := orphansDue
		if !retry.IsZero() && (due.IsZero() || retry.Before(due)) {
			due = retry
		}
		if !due.IsZero() {
			return database.ScheduleTimer(ctx, w.Q, database.Timer{Kind: timerCommit, Key: string(r.id), Queue: roomQueue(r.id),
				DueAt: due}, database.Earliest)
		}
		return database.CancelTimer(ctx, w.Q, timerCommit, string(r.id))
	}
	// The committer rule, for each of our devices in the base: one of
	// them commits now if it has the lowest leaf; else the earliest turn
	// among them is kept as a timer, and when it comes the commit is made
	// if the change is still not in the base.
	joined, err := r.m.Joined(view)
	if err != nil {
		return errf(r.id, "committer rule: %w", err)
	}
	now := s.now()
	jitter := rand.New(rand.NewPCG(uint64(now.UnixNano()), uint64(len(r.id))))
	rounds := r.m.Graph().ResolvingRun()
	later, by := epochs.DecideAmong(epochs.CommitterInput{Joined: joined, Seen: now, Grace: s.cfg.Grace,
		MaxJitter: s.cfg.MaxJitter, Jitter: jitter, Rounds: rounds}, ours)
	switch later.Action {
	case epochs.CommitNow:
		return s.commitNow(ctx, w, r, by, view, why)
	case epochs.DoNotCommit:
		return nil
	}
	if why.timer {
		// Our turn came and the change is still pending: the device of
		// ours with the lowest leaf commits.
		return s.commitNow(ctx, w, r, lowestLeaf(joined, ours), view, why)
	}
	// A waiting device's grace runs from the last change it saw: a commit
	// of another device that arrives while it waits is the first
	// committer at work, and committing on top of it before it could
	// reach the others is what makes concurrent resolutions fork again
	// and again when events take longer than the grace to arrive. A new
	// membership change keeps the earlier turn.
	mode := database.Earliest
	if why.commit {
		mode = database.Replace
	}
	return database.ScheduleTimer(ctx, w.Q, database.Timer{Kind: timerCommit, Key: string(r.id), Queue: roomQueue(r.id),
		DueAt: later.At}, mode)
}

// ownBundle is the KeyPackage of a device of ours that a commit adds,
// with its private keys, and its reference (to use it up).
type ownBundle struct {
	ref    []byte
	bundle *group.KeyPackageBundle
}

// ownBundles finds the private parts of the KeyPackages claimed for our
// own devices among kps, so that our commit makes those devices members
// at once (epochs.Member.CommitJoining). A device whose KeyPackage is not
// found here is left out of the map: it joins from the Welcome.
func (s *Service) ownBundles(ctx context.Context, w *inbound.Work, room id.RoomID, kps map[epochs.Device]*message.KeyPackage) (map[epochs.Device]ownBundle, error) {
	out := map[epochs.Device]ownBundle{}
	for d, kp := range kps {
		if !s.cfg.Puppets.Owns(id.UserID(d.UserID)) {
			continue
		}
		ref, bundle, err := s.cfg.Keys.FindKeyPackage(ctx, w.Q, toKeys(d), [][]byte{kp.Ref(s.suite)})
		switch {
		case errors.Is(err, keys.ErrUnknownKeyPackage):
			s.cfg.Log.Warn().Err(err).Stringer("room_id", room).Str("device", d.String()).
				Msg("The KeyPackage claimed for our own device is not among its own; it joins from the Welcome")
			continue
		case err != nil:
			return nil, errf(room, "KeyPackage of our device %v: %w", d, err)
		}
		out[d] = ownBundle{ref: ref, bundle: bundle}
	}
	return out, nil
}

// lowestLeaf returns the one of ours with the lowest leaf among joined.
func lowestLeaf(joined []epochs.LeafDevice, ours []epochs.Device) epochs.Device {
	best := ours[0]
	bestLeaf := ^uint32(0)
	mine := epochs.DeviceSet(ours)
	for _, j := range joined {
		if mine[j.Device] && j.Leaf < bestLeaf {
			best, bestLeaf = j.Device, j.Leaf
		}
	}
	return best
}

// plan is what the next commit would change (epochs.PlanMembership on
// the base) and whether a fork is open, leaving out of the additions the
// devices whose KeyPackage could not be claimed or verified before
// (recorded in dmls_left_out as "user|device"): a device without a usable
// KeyPackage is not claimed again on every change; a device-list change
// of its user clears the record.
//
// waiting reports devices of ours left out because their keys are not
// uploaded yet.
func (s *Service) plan(ctx context.Context, q database.Querier, r *room, view epochs.Room) (plan epochs.Plan, forked, waiting bool, err error) {
	if err := s.excludeOrphans(ctx, q, r, &view); err != nil {
		return epochs.Plan{}, false, false, err
	}
	rc, err := r.m.Graph().NextCommit(view)
	if err != nil {
		return epochs.Plan{}, false, false, errf(r.id, "plan: %w", err)
	}
	// A device of a user still in the room is removed only because the
	// user's device list lacks it: check that list afresh before acting
	// on it, since a stale list would remove a device that other members
	// then add again.
	var recheck []string
	for _, d := range rc.Plan.Remove {
		if st := view.Members[d.UserID]; (st == epochs.Join || st == epochs.Invite) && !slices.Contains(recheck, d.UserID) {
			recheck = append(recheck, d.UserID)
		}
	}
	if len(recheck) > 0 {
		if err := forgetDevices(ctx, q, recheck); err != nil {
			return epochs.Plan{}, false, false, err
		}
		ours := r.ours()
		if len(ours) > 0 {
			fresh, err := s.roomView(ctx, q, r.id, toKeys(ours[0]))
			if err != nil {
				return epochs.Plan{}, false, false, err
			}
			view.Devices = fresh.Devices
			if err := s.excludeOrphans(ctx, q, r, &view); err != nil {
				return epochs.Plan{}, false, false, err
			}
			if rc, err = r.m.Graph().NextCommit(view); err != nil {
				return epochs.Plan{}, false, false, errf(r.id, "plan: %w", err)
			}
		}
	}
	plan, forked = rc.Plan, r.m.Graph().Forked()
	if len(plan.Add) == 0 {
		return plan, forked, false, nil
	}
	// Our devices whose keys are not uploaded yet wait for it: nobody can
	// claim their KeyPackages, and the device-list change that the upload
	// causes brings the rooms back here.
	var ourUsers []id.UserID
	for _, d := range plan.Add {
		if s.cfg.Puppets.Owns(id.UserID(d.UserID)) {
			ourUsers = append(ourUsers, id.UserID(d.UserID))
		}
	}
	if len(ourUsers) > 0 {
		uploaded, err := ourDevices(ctx, q, ourUsers)
		if err != nil {
			return epochs.Plan{}, false, false, err
		}
		n := len(plan.Add)
		plan.Add = slices.DeleteFunc(plan.Add, func(d epochs.Device) bool {
			return s.cfg.Puppets.Owns(id.UserID(d.UserID)) &&
				!slices.Contains(uploaded[id.UserID(d.UserID)], id.DeviceID(d.DeviceID))
		})
		waiting = len(plan.Add) < n
	}
	failed, _, err := s.leftOutDevices(ctx, q, r.id)
	if err != nil {
		return epochs.Plan{}, false, false, err
	}
	plan.Add = slices.DeleteFunc(plan.Add, func(d epochs.Device) bool { return slices.Contains(failed, d.Identity()) })
	return plan, forked, waiting, nil
}

// commitNow makes the next commit as our device dev: claims and verifies
// the KeyPackages of the devices to add, commits on the base (resolving
// any fork), and writes the commit and its Welcomes to the outbox in the
// work's transaction.
func (s *Service) commitNow(ctx context.Context, w *inbound.Work, r *room, dev epochs.Device, view epochs.Room, why reconcileReason) error {
	start := time.Now()
	plan, _, _, err := s.plan(ctx, w.Q, r, view)
	if err != nil {
		return err
	}
	kps := map[epochs.Device]*message.KeyPackage{}
	if len(plan.Add) > 0 {
		want := make([]keys.Device, len(plan.Add))
		for i, d := range plan.Add {
			want[i] = toKeys(d)
		}
		claimed, err := s.cfg.Keys.Claim(ctx, toKeys(dev), want)
		if err != nil {
			return errf(r.id, "claim KeyPackages: %w", err)
		}
		for _, c := range claimed {
			d := fromKeys(c.Device)
			if c.Refused != nil {
				if err := s.leftOut(ctx, w, r.id, d.Identity(), leftOutReason(c.Refused.Reason)); err != nil {
					return err
				}
				if c.Refused.Reason == keys.ReasonNoKeyPackage {
					if err := database.ScheduleTimer(ctx, w.Q, database.Timer{Kind: timerCommit, Key: string(r.id),
						Queue: roomQueue(r.id), DueAt: s.now().Add(leftOutRetry)}, database.Earliest); err != nil {
						return err
					}
				}
				continue
			}
			kps[d] = c.KeyPackage
		}
	}
	joiners, err := s.ownBundles(ctx, w, r.id, kps)
	if err != nil {
		return err
	}
	if err := s.excludeOrphans(ctx, w.Q, r, &view); err != nil {
		return err
	}
	out, err := r.m.CommitJoining(dev, view, func(d epochs.Device) *message.KeyPackage { return kps[d] },
		func(d epochs.Device) *group.KeyPackageBundle { return joiners[d].bundle }, s.now())
	if errors.Is(err, epochs.ErrCannotCommit) {
		s.cfg.Log.Info().Stringer("room_id", r.id).Stringer("device", dev).Msg("Our device cannot commit in this room (not in the base epoch's group)")
		return nil
	}
	if err != nil {
		return errf(r.id, "commit: %w", err)
	}
	if err := s.sendCommit(ctx, w, r, out); err != nil {
		return err
	}
	for _, d := range out.Removed {
		if st := view.Members[d.UserID]; st == epochs.Join || st == epochs.Invite {
			s.cfg.Log.Info().Stringer("room_id", r.id).Str("removed", d.Identity()).Strs("listed", view.Devices[d.UserID]).
				Msg("Removed a device of a user still in the room: the user's device list lacks it")
		}
	}
	// Our devices that the commit removes are no longer orphans: should
	// they be added again, their wait starts afresh, longer.
	var removed []epochs.Device
	for _, d := range out.Removed {
		if s.cfg.Puppets.Owns(id.UserID(d.UserID)) {
			removed = append(removed, d)
		}
	}
	if err := s.orphansRemoved(ctx, w, r.id, removed); err != nil {
		return err
	}
	// Our own devices that the commit adds are ours in the new epoch at
	// once (Outgoing.Joined), their private parts derived from the path
	// secrets of the commit: their KeyPackages are used up now, and no
	// Welcome goes to them (sendCommit). Opening the Welcome instead cost
	// each of them the whole GroupInfo with its ratchet tree, about
	// 100 ms a device at 10,000 members: a room of 10,000 of our devices
	// filled by one commit outlasted the item's two minutes again and
	// again. Waiting for a to-device copy is no choice either: Synapse
	// drops to-device messages to an appservice that is down
	// (synapse#14710), which could leave a device of ours in the tree
	// without its keys.
	for _, d := range out.Joined {
		if err := s.cfg.Keys.Consume(ctx, w, toKeys(d), joiners[d].ref); err != nil {
			return err
		}
	}
	if len(out.Joined) > 0 {
		w.Count(s.metrics.WelcomesJoined, float64(len(out.Joined)))
		if err := s.orphansSettled(ctx, w.Q, r.id, out.Joined); err != nil {
			return err
		}
	}
	// A device of ours whose KeyPackage's private part was not found for
	// the commit (ownBundles) joins from the Welcome we made, which it is
	// sent as well.
	joined := epochs.DeviceSet(out.Joined)
	for _, d := range out.Added {
		if !s.cfg.Puppets.Owns(id.UserID(d.UserID)) || out.Welcome == nil || joined[d] {
			continue
		}
		c := out.Commit
		c.EventID = ""
		if _, err := s.joinDevice(ctx, w, r, toKeys(d), out.Welcome, c); err != nil && !errors.Is(err, epochs.ErrDuplicateCommit) {
			s.cfg.Log.Warn().Err(err).Stringer("room_id", r.id).Str("device", d.String()).Msg("Our added device could not join from our own Welcome; it waits for the to-device copy")
		}
	}
	if err := database.CancelTimer(ctx, w.Q, timerCommit, string(r.id)); err != nil {
		return err
	}
	w.Count(s.metrics.CommitsMade, 1)
	if len(out.Commit.Resolves) > 0 {
		w.Count(s.metrics.ForksResolved, 1)
	}
	s.metrics.CommitSeconds.Observe(time.Since(start).Seconds())
	if why.event != "" && !why.at.IsZero() {
		s.metrics.MembershipToPlan.Observe(time.Since(why.at).Seconds())
	}
	s.cfg.Log.Info().Stringer("room_id", r.id).Stringer("device", dev).Uint64("epoch", out.Commit.Number).
		Int("added", len(out.Added)).Int("removed", len(out.Removed)).Int("resolves", len(out.Commit.Resolves)).
		Strs("added_devices", deviceNames(out.Added)).Strs("removed_devices", deviceNames(out.Removed)).
		Msg("Committed")
	return nil
}

// deviceNames names up to logDevices devices for a log line (a large
// room's first commit adds thousands).
func deviceNames(ds []epochs.Device) []string {
	out := make([]string, 0, min(len(ds), logDevices+1))
	for i, d := range ds {
		if i == logDevices {
			out = append(out, fmt.Sprintf("… %d more", len(ds)-i))
			break
		}
		out = append(out, d.Identity())
	}
	return out
}

const logDevices = 8

// uploadRecheck is how soon a room looks again at a device of ours that
// it could not add because its keys were not uploaded yet.
const uploadRecheck = 2 * time.Second

// pendingCommitEvent is the placeholder commit_event of content whose
// real value the outbox fills in from the commit row it waits for.
const pendingCommitEvent = "$pending"

// epochRef names an epoch for the wire: its creator and commit event, or,
// for our own commit not sent yet, the outbox row whose event id it will
// be (after), to be filled into commit_event.
func (s *Service) epochRef(ctx context.Context, q database.Querier, r *room, epoch epochs.ID) (creator epochs.Device, event string, after int64, err error) {
	n, ok := r.node(epoch)
	if !ok {
		return creator, "", 0, errf(r.id, "epoch %v is not in the graph", epoch)
	}
	if n.CommitEvent != "" {
		return n.Creator, n.CommitEvent, 0, nil
	}
	err = q.QueryRow(ctx, `SELECT outbox_seq FROM dmls_commit_event WHERE room_id = $1 AND epoch_id = $2`,
		r.id, []byte(epoch)).Scan(&after)
	if err != nil {
		return creator, "", 0, errf(r.id, "commit event of epoch %v unknown and no commit of ours makes it: %w", epoch, err)
	}
	return n.Creator, pendingCommitEvent, after, nil
}

// sendCommit writes a commit and its Welcomes to the outbox: the commit
// as a room event naming its base (waiting for our own base commit's
// event id if that is not known yet), each Welcome as a to-device message
// to its device after the commit, naming the commit's event id.
func (s *Service) sendCommit(ctx context.Context, w *inbound.Work, r *room, out *epochs.Outgoing) error {
	c := out.Commit
	creator, baseEvent, after, err := s.epochRef(ctx, w.Q, r, c.Base)
	if err != nil {
		return err
	}
	content := wireEncrypted{Algorithm: keys.Algorithm(s.suite.ID()), Ciphertext: b64(c.Message),
		EpochCreator: (*deviceJSON)(&creator), CommitEvent: baseEvent, Epoch: (*b64ID)(&c.Base),
		Sender: (*deviceJSON)(&c.Creator), Next: (*b64ID)(&c.Epoch), NextNumber: &c.Number}
	for _, h := range c.Resolves {
		n, _ := r.node(h)
		content.Resolves = append(content.Resolves, epochs.ResolvesPair{Number: n.Number, Creator: n.Creator})
		content.DMLSResolves = append(content.DMLSResolves, b64ID(h))
	}
	body, err := json.Marshal(content)
	if err != nil {
		return err
	}
	commitUpload, err := s.offloadIfLarge(ctx, w, offloadCommit, c.Creator, len(body), c.Message)
	if err != nil {
		return errf(r.id, "commit: %w", err)
	}
	if commitUpload != nil {
		content.Ciphertext, content.CiphertextFile = "", commitUpload.file
		if body, err = json.Marshal(content); err != nil {
			return err
		}
	}
	ev := database.OutgoingEvent{Kind: database.RoomEvent, UserID: c.Creator.UserID, DeviceID: c.Creator.DeviceID,
		RoomID: string(r.id), EventType: EncryptedType, Content: body, Hook: HookName, HookRef: hookRef(r.id, c.Epoch)}
	if after != 0 {
		ev.After, ev.FillField = after, "commit_event"
	}
	if commitUpload != nil {
		dependOnUpload(&ev, commitUpload)
	}
	seq, _, err := w.Out.AddOutgoing(ctx, ev)
	if err != nil {
		return err
	}
	if _, err := w.Q.Exec(ctx, `INSERT INTO dmls_commit_event (room_id, epoch_id, outbox_seq) VALUES ($1, $2, $3)`,
		r.id, []byte(c.Epoch), seq); err != nil {
		return errf(r.id, "record commit of %v: %w", c.Epoch, err)
	}
	joined := epochs.DeviceSet(out.Joined)
	welcomeTo := slices.DeleteFunc(slices.Clone(out.Added), func(d epochs.Device) bool { return joined[d] })
	if out.Welcome == nil || len(welcomeTo) == 0 {
		return nil
	}
	wel := wireWelcome{Algorithm: welcomePrefix + keys.Algorithm(s.suite.ID())[len(algorithmPrefix):],
		Ciphertext: b64(out.Welcome), RoomID: string(r.id), Sender: (*deviceJSON)(&c.Creator),
		CommitEvent: pendingCommitEvent, Base: (*b64ID)(&c.Base), Epoch: (*b64ID)(&c.Epoch), Number: &c.Number,
		Resolves: content.Resolves, DMLSResolves: content.DMLSResolves}
	if n, ok := r.node(c.Base); ok {
		wel.Resolves = append([]epochs.ResolvesPair{{Number: n.Number, Creator: n.Creator}}, wel.Resolves...)
	}
	welBody, err := json.Marshal(wel)
	if err != nil {
		return err
	}
	// One upload serves every device it goes to: the Welcome is the same
	// for all of them.
	welUpload, err := s.offloadIfLarge(ctx, w, offloadWelcome, c.Creator, len(welBody), out.Welcome)
	if err != nil {
		return errf(r.id, "welcome: %w", err)
	}
	if welUpload != nil {
		wel.Ciphertext, wel.CiphertextFile = "", welUpload.file
		if welBody, err = json.Marshal(wel); err != nil {
			return err
		}
	}
	// The same content goes to every added device but ours that hold the
	// epoch already: one to-device row (one request) carries it to many
	// (welcomeRecipients).
	per := welcomeRecipients(len(welBody))
	for added := welcomeTo; len(added) > 0; {
		batch := added[:min(per, len(added))]
		added = added[len(batch):]
		ev := database.OutgoingEvent{Kind: database.ToDevice, UserID: c.Creator.UserID,
			DeviceID: c.Creator.DeviceID, RoomID: string(r.id), EventType: EncryptedType,
			ToUserID: batch[0].UserID, ToDeviceID: batch[0].DeviceID, Content: welBody, After: seq, FillField: "commit_event"}
		for _, d := range batch[1:] {
			if ev.AlsoTo == nil {
				ev.AlsoTo = map[string][]string{}
			}
			ev.AlsoTo[d.UserID] = append(ev.AlsoTo[d.UserID], d.DeviceID)
		}
		if welUpload != nil {
			dependOnUpload(&ev, welUpload)
		}
		if _, _, err := w.Out.AddOutgoing(ctx, ev); err != nil {
			return err
		}
		w.Count(s.metrics.WelcomesSent, float64(len(batch)))
	}
	return nil
}

// Bounds of one Welcome to-device request: a commit adding many devices
// sends its Welcome in requests of at most maxWelcomeRecipients devices
// and about maxWelcomeRequest bytes (an inline Welcome is up to
// media.offload_threshold, 48 KiB by default, so about 20 a request; an
// offloaded one is a few hundred bytes). One request a device costs a
// round trip each (a room of 10,000 filled at once: 10,000 requests); one
// request for ten thousand would be a body most homeservers refuse, and a
// refusal of it would give up every one of them.
const (
	maxWelcomeRecipients = 100
	maxWelcomeRequest    = 1 << 20
)

// welcomeRecipients is how many devices one request carries a Welcome of
// size bytes to.
func welcomeRecipients(size int) int {
	return max(1, min(maxWelcomeRecipients, maxWelcomeRequest/max(size, 1)))
}

func hookRef(room id.RoomID, epoch epochs.ID) []byte {
	return []byte(string(room) + "\n" + epoch.String())
}

// Sent is the outbox hook: our commit's event id, recorded for its epoch
// (merged into the graph when the room is next loaded).
func (s *Service) Sent(ctx context.Context, q database.Querier, ev *database.OutgoingEvent, eventID string) error {
	room, epochStr, ok := strings.Cut(string(ev.HookRef), "\n")
	if !ok || eventID == "" {
		return nil
	}
	epoch, err := epochs.ParseID(epochStr)
	if err != nil {
		return nil
	}
	if _, err := q.Exec(ctx, `UPDATE dmls_commit_event SET event_id = $3 WHERE room_id = $1 AND epoch_id = $2`,
		room, []byte(epoch), eventID); err != nil {
		return fmt.Errorf("record commit event %s: %w", eventID, err)
	}
	return nil
}

func toKeys(d epochs.Device) keys.Device {
	return keys.Device{UserID: id.UserID(d.UserID), DeviceID: id.DeviceID(d.DeviceID)}
}

func fromKeys(d keys.Device) epochs.Device {
	return epochs.Device{UserID: string(d.UserID), DeviceID: string(d.DeviceID)}
}
