package groups

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/seal"
)

// A room's DMLS state in PostgreSQL (DESIGN 4, 8): the graph's metadata
// in dmls_room, and per retained epoch the state that all our devices
// share (dmls_epoch, in three parts that change at different times) and
// our devices' private parts (dmls_epoch_private, one row per epoch). A
// room is loaded for one work item or API call, under its queue's lock;
// epoch states are read only when the operation needs them, and saving
// writes only what the operation changed.

// Sealing purposes of the room state.
const (
	purposeEpochStatic  seal.Purpose = "groups epoch static"
	purposeEpochInit    seal.Purpose = "groups epoch init"
	purposeEpochSecrets seal.Purpose = "groups epoch secrets"
	purposeEpochPrivate seal.Purpose = "groups epoch private"
	purposeSent         seal.Purpose = "groups sent plaintext"
)

func epochRow(room id.RoomID, epoch epochs.ID, part string) seal.Binding {
	return seal.Row("dmls_epoch", string(room), epoch.String(), part)
}

// privateRow binds a device's private part to its room, epoch and device.
// It names dmls_epoch_device, the table that held one row per part until
// migration 0017: the parts moved into dmls_epoch_private as sealed, and
// a binding is a label, not a place.
func privateRow(room id.RoomID, epoch epochs.ID, d epochs.Device) seal.Binding {
	return seal.Row("dmls_epoch_device", string(room), epoch.String(), d.UserID, d.DeviceID)
}

// room is a DMLS room loaded for one operation. m is nil while none of
// our devices holds an epoch of it.
type room struct {
	id    id.RoomID
	state string
	m     *epochs.Member
	// stored is state as read, so that saving an unchanged room (every
	// message) writes nothing.
	stored string
}

// held reports whether one of our devices holds an epoch of the room.
func (r *room) held() bool { return r.m != nil && r.m.Graph().Len() > 0 }

// base returns the base epoch and our devices in it.
func (r *room) base() (epochs.ID, []epochs.Device, error) {
	b, err := r.m.Base()
	if err != nil {
		return "", nil, err
	}
	return b, r.m.Holders(b), nil
}

// ours returns our devices in the base epoch (none if we hold nothing).
func (r *room) ours() []epochs.Device {
	if !r.held() {
		return nil
	}
	_, ours, err := r.base()
	if err != nil {
		return nil
	}
	return ours
}

// node returns the graph's metadata of an epoch.
func (r *room) node(epoch epochs.ID) (epochs.Node[*epochs.EpochState], bool) {
	if r.m == nil {
		return epochs.Node[*epochs.EpochState]{}, false
	}
	return r.m.Graph().Node(epoch)
}

// groupConfig is the MLS configuration of our groups: the DMLS key
// schedule, commits as PublicMessages (so that every member can read a
// commit's confirmation tag, epochs/doc.go), and no past secret trees
// inside a state: package epochs keeps past epochs as states of their own.
func (s *Service) groupConfig() group.Config {
	return group.Config{Scheme: keyschedule.SchemeDMLS, HandshakeWireFormat: 0}
}

// loadRoom reads room's state; nil if it is not a DMLS room we know.
// Epoch states are read from the database when the operation first uses
// them (epochs.Loader).
func (s *Service) loadRoom(ctx context.Context, q database.Querier, roomID id.RoomID) (*room, error) {
	var state string
	var graph []byte
	// With the event ids of our commits that the outbox learned since, in
	// the same statement: every event of the room asks.
	var commitEpochs [][]byte
	var commitEvents []string
	err := q.QueryRow(ctx, `SELECT state, graph,
		ARRAY(SELECT epoch_id FROM dmls_commit_event WHERE room_id = $1 AND event_id IS NOT NULL ORDER BY epoch_id),
		ARRAY(SELECT event_id FROM dmls_commit_event WHERE room_id = $1 AND event_id IS NOT NULL ORDER BY epoch_id)
		FROM dmls_room WHERE room_id = $1`, roomID).Scan(&state, &graph, &commitEpochs, &commitEvents)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, errf(roomID, "read: %w", err)
	}
	r := &room{id: roomID, state: state, stored: state}
	if graph == nil {
		return r, nil
	}
	load := func(epoch epochs.ID) (*epochs.StoredEpoch, error) { return s.loadEpoch(ctx, q, roomID, epoch) }
	if r.m, err = epochs.LoadMember(graph, s.groupConfig(), load); err != nil {
		return nil, errf(roomID, "stored graph: %w", err)
	}
	r.m.Policy = s.cfg.Policy
	if len(commitEpochs) != len(commitEvents) {
		return nil, errf(roomID, "commit events: %d epochs for %d events", len(commitEpochs), len(commitEvents))
	}
	for i, eid := range commitEpochs {
		if n, ok := r.m.Graph().Node(epochs.ID(eid)); ok && n.CommitEvent == "" {
			if err := r.m.SetCommitEvent(epochs.ID(eid), commitEvents[i]); err != nil {
				return nil, errf(roomID, "commit events: %w", err)
			}
		}
	}
	return r, nil
}

// loadEpoch reads one epoch's stored parts, unsealed.
func (s *Service) loadEpoch(ctx context.Context, q database.Querier, roomID id.RoomID, epoch epochs.ID) (*epochs.StoredEpoch, error) {
	st := &epochs.StoredEpoch{}
	decoded, cached := s.statics.get(roomID, epoch)
	var static, init, secrets []byte
	var users, devices []string
	var privates [][]byte
	// A cached static part is not read again: for a large room it is
	// most of the row. Our devices' private parts come in the same
	// statement.
	err := q.QueryRow(ctx, `SELECT CASE WHEN $3 THEN NULL ELSE e.static END, e.init, e.secrets, e.commit,
		p.user_ids, p.device_ids, p.privates
		FROM dmls_epoch e LEFT JOIN dmls_epoch_private p USING (room_id, epoch_id)
		WHERE e.room_id = $1 AND e.epoch_id = $2`,
		roomID, []byte(epoch), cached).Scan(&static, &init, &secrets, &st.Commit, &users, &devices, &privates)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errf(roomID, "epoch %v is in the graph but not stored", epoch)
	}
	if err != nil {
		return nil, errf(roomID, "read epoch %v: %w", epoch, err)
	}
	open := func(p seal.Purpose, part string, sealed []byte) ([]byte, error) {
		return s.cfg.Sealer.Open(p, epochRow(roomID, epoch, part), sealed)
	}
	if !cached {
		plain, err := open(purposeEpochStatic, "static", static)
		if err != nil {
			return nil, err
		}
		if decoded, err = group.UnmarshalStatic(plain); err != nil {
			return nil, errf(roomID, "epoch %v: %w", epoch, err)
		}
		if epochs.ID(decoded.EpochID()) != epoch {
			return nil, errf(roomID, "epoch %v: stored static part is of epoch %v", epoch, epochs.ID(decoded.EpochID()))
		}
		s.statics.put(roomID, epoch, decoded)
	}
	st.Decoded = decoded
	if st.InitState, err = open(purposeEpochInit, "init", init); err != nil {
		return nil, err
	}
	if st.SecretTree, err = open(purposeEpochSecrets, "secrets", secrets); err != nil {
		return nil, err
	}
	// Our devices' private parts are opened when the Member decodes them:
	// a send needs its sender's only.
	if st.Privates, err = privateParts(roomID, epoch, users, devices, privates); err != nil {
		return nil, err
	}
	st.Open = func(d epochs.Device, sealed []byte) ([]byte, error) { return s.openPrivate(roomID, epoch, d, sealed) }
	return st, nil
}

// openPrivate opens device d's private part of an epoch, sealed where it
// is bound.
func (s *Service) openPrivate(roomID id.RoomID, epoch epochs.ID, d epochs.Device, sealed []byte) ([]byte, error) {
	plain, err := s.cfg.Sealer.Open(purposeEpochPrivate, privateRow(roomID, epoch, d), sealed)
	if err != nil {
		return nil, errf(roomID, "epoch %v: private part of %v: %w", epoch, d, err)
	}
	return plain, nil
}

// privateParts pairs a dmls_epoch_private row's parallel arrays: each
// device with its sealed part.
func privateParts(roomID id.RoomID, epoch epochs.ID, users, devices []string, sealed [][]byte) (map[epochs.Device][]byte, error) {
	if len(users) != len(devices) || len(users) != len(sealed) {
		return nil, errf(roomID, "epoch %v: %d users, %d devices and %d private parts", epoch, len(users), len(devices), len(sealed))
	}
	parts := make(map[epochs.Device][]byte, len(users))
	for i := range users {
		parts[epochs.Device{UserID: users[i], DeviceID: devices[i]}] = sealed[i]
	}
	return parts, nil
}

// saveRoom writes what the operation changed: the room's state, and
// from the Member's changes new epochs, the parts of existing ones that
// changed, privates added or removed, dropped epochs, and the graph. If it
// fails, the work item's transaction is rolled back and the room loaded
// again from what was stored.
func (s *Service) saveRoom(ctx context.Context, w *inbound.Work, r *room) error {
	var graph []byte
	if r.m != nil {
		// Retention runs whenever the room is saved: its epochs change
		// only in work items that end here.
		dropped, err := r.m.Retain(s.now())
		if err != nil {
			return errf(r.id, "retention: %w", err)
		}
		w.Count(s.metrics.EpochsDropped, float64(len(dropped)))
		ch, err := r.m.Flush()
		if err != nil {
			return errf(r.id, "encode changes: %w", err)
		}
		if err := s.writeChanges(ctx, w.Q, r.id, ch); err != nil {
			return err
		}
		graph = ch.Metadata
		// What retention keeps for a while changes only with the graph.
		if graph != nil {
			if err := s.scheduleRetain(ctx, w.Q, r); err != nil {
				return err
			}
		}
	}
	if graph == nil {
		if r.state == r.stored {
			return nil
		}
		_, err := w.Q.Exec(ctx, `UPDATE dmls_room SET state = $2, updated_at = now() WHERE room_id = $1 AND state <> $2`, r.id, r.state)
		if err != nil {
			return errf(r.id, "store state: %w", err)
		}
		r.stored = r.state
		return nil
	}
	if _, err := w.Q.Exec(ctx, `UPDATE dmls_room SET graph = $2, state = $3, updated_at = now() WHERE room_id = $1`,
		r.id, graph, r.state); err != nil {
		return errf(r.id, "store graph: %w", err)
	}
	r.stored = r.state
	return nil
}

func (s *Service) writeChanges(ctx context.Context, q database.Querier, roomID id.RoomID, ch *epochs.Changes) error {
	s.statics.drop(roomID, ch.Dropped)
	for _, epoch := range ch.Dropped {
		if _, err := q.Exec(ctx, `DELETE FROM dmls_epoch WHERE room_id = $1 AND epoch_id = $2`, roomID, []byte(epoch)); err != nil {
			return errf(roomID, "drop epoch %v: %w", epoch, err)
		}
		if _, err := q.Exec(ctx, `DELETE FROM dmls_commit_event WHERE room_id = $1 AND epoch_id = $2`, roomID, []byte(epoch)); err != nil {
			return errf(roomID, "drop epoch %v: %w", epoch, err)
		}
	}
	for _, e := range ch.Epochs {
		sealPart := func(p seal.Purpose, part string, b []byte) ([]byte, error) {
			if b == nil {
				return nil, nil
			}
			return s.cfg.Sealer.Seal(p, epochRow(roomID, e.Epoch, part), b)
		}
		static, err := sealPart(purposeEpochStatic, "static", e.Static)
		if err != nil {
			return err
		}
		init, err := sealPart(purposeEpochInit, "init", e.InitState)
		if err != nil {
			return err
		}
		secrets, err := sealPart(purposeEpochSecrets, "secrets", e.SecretTree)
		if err != nil {
			return err
		}
		if static != nil {
			_, err = q.Exec(ctx, `INSERT INTO dmls_epoch (room_id, epoch_id, static, init, secrets, commit)
				VALUES ($1, $2, $3, $4, $5, $6)`, roomID, []byte(e.Epoch), static, init, secrets, e.Commit)
		} else if init != nil || secrets != nil || e.Commit != nil {
			// e.Commit here is one lent to an epoch entered by Welcome.
			_, err = q.Exec(ctx, `UPDATE dmls_epoch SET init = coalesce($3, init), secrets = coalesce($4, secrets),
				commit = coalesce($5, commit) WHERE room_id = $1 AND epoch_id = $2`, roomID, []byte(e.Epoch), init, secrets, e.Commit)
		}
		if err != nil {
			return errf(roomID, "store epoch %v: %w", e.Epoch, err)
		}
		if len(e.Removed) > 0 || len(e.Privates) > 0 {
			if err := s.writePrivates(ctx, q, roomID, &e); err != nil {
				return err
			}
		}
	}
	if len(ch.CommitsUnneeded) > 0 {
		ids := make([][]byte, len(ch.CommitsUnneeded))
		for i, e := range ch.CommitsUnneeded {
			ids[i] = []byte(e)
		}
		if _, err := q.Exec(ctx, `UPDATE dmls_epoch SET commit = NULL WHERE room_id = $1 AND epoch_id = ANY($2) AND commit IS NOT NULL`,
			roomID, ids); err != nil {
			return errf(roomID, "clear commits of %d epochs: %w", len(ids), err)
		}
	}
	return nil
}

// writePrivates applies an epoch's removed and added private parts to its
// dmls_epoch_private row: read, changed and written back whole, or deleted
// once no part is left. Parts kept are not opened: each is bound to its
// device, not to its place in the arrays. It runs when an epoch is made or
// entered, or loses devices of ours: never per message.
func (s *Service) writePrivates(ctx context.Context, q database.Querier, roomID id.RoomID, e *epochs.EpochChanges) error {
	var users, devices []string
	var sealed [][]byte
	err := q.QueryRow(ctx, `SELECT user_ids, device_ids, privates FROM dmls_epoch_private WHERE room_id = $1 AND epoch_id = $2`,
		roomID, []byte(e.Epoch)).Scan(&users, &devices, &sealed)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return errf(roomID, "read private parts in %v: %w", e.Epoch, err)
	}
	parts, err := privateParts(roomID, e.Epoch, users, devices, sealed)
	if err != nil {
		return err
	}
	for _, d := range e.Removed {
		delete(parts, d)
	}
	for d, plain := range e.Privates {
		b, err := s.cfg.Sealer.Seal(purposeEpochPrivate, privateRow(roomID, e.Epoch, d), plain)
		if err != nil {
			return err
		}
		parts[d] = b
	}
	if len(parts) == 0 {
		if _, err := q.Exec(ctx, `DELETE FROM dmls_epoch_private WHERE room_id = $1 AND epoch_id = $2`, roomID, []byte(e.Epoch)); err != nil {
			return errf(roomID, "drop private parts in %v: %w", e.Epoch, err)
		}
		return nil
	}
	users, devices, sealed = users[:0], devices[:0], sealed[:0]
	for _, d := range slices.SortedFunc(maps.Keys(parts), epochs.Device.Compare) {
		users, devices, sealed = append(users, d.UserID), append(devices, d.DeviceID), append(sealed, parts[d])
	}
	if _, err := q.Exec(ctx, `INSERT INTO dmls_epoch_private (room_id, epoch_id, user_ids, device_ids, privates)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, epoch_id) DO UPDATE
		SET user_ids = excluded.user_ids, device_ids = excluded.device_ids, privates = excluded.privates`,
		roomID, []byte(e.Epoch), users, devices, sealed); err != nil {
		return errf(roomID, "store private parts in %v: %w", e.Epoch, err)
	}
	return nil
}
