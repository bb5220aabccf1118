package groups

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/mls/group"
	"github.com/mls-appservice/mls-appservice/mls/keyschedule"
	"github.com/mls-appservice/mls-appservice/seal"
)

// A room's DMLS state in PostgreSQL (DESIGN 4, 8): the graph's metadata
// in dmls_room, and per retained epoch the state that all our devices
// share (dmls_epoch, in three parts that change at different times) and
// each of our devices' private part (dmls_epoch_device). A room is loaded
// for one work item or API call, under its queue's lock; epoch states are
// read only when the operation needs them, and saving writes only what
// the operation changed.

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

func privateRow(room id.RoomID, epoch epochs.ID, d epochs.Device) seal.Binding {
	return seal.Row("dmls_epoch_device", string(room), epoch.String(), d.UserID, d.DeviceID)
}

// room is a DMLS room loaded for one operation.
type room struct {
	id    id.RoomID
	state string
	m     *epochs.Member
}

// groupConfig is the MLS configuration of our groups: the DMLS key
// schedule, commits as PublicMessages (so that every member can read a
// commit's confirmation tag, epochs/doc.go), and no past secret trees
// inside a state: package epochs keeps past epochs as states of their own.
func (s *Service) groupConfig() group.Config {
	return group.Config{Scheme: keyschedule.SchemeDMLS, HandshakeWireFormat: 0}
}

// loadRoom reads room's state; nil if it is not a DMLS room we know.
func (s *Service) loadRoom(ctx context.Context, q database.Querier, roomID id.RoomID) (*room, error) {
	var state string
	var graph []byte
	err := q.QueryRow(ctx, `SELECT state, graph FROM dmls_room WHERE room_id = $1`, roomID).Scan(&state, &graph)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, errf(roomID, "read: %w", err)
	}
	r := &room{id: roomID, state: state}
	load := func(epoch epochs.ID) (*epochs.State, error) { return s.loadEpoch(ctx, q, roomID, epoch) }
	if graph == nil {
		r.m = epochs.NewRoomMember(s.groupConfig(), s.cfg.Policy, load)
	} else if r.m, err = epochs.UnmarshalMember(graph, s.groupConfig(), s.cfg.Policy, load); err != nil {
		return nil, errf(roomID, "stored graph: %w", err)
	}
	// Event ids of our commits that the outbox learned since.
	rows, err := q.Query(ctx, `SELECT epoch_id, event_id FROM dmls_commit_event WHERE room_id = $1 AND event_id IS NOT NULL`, roomID)
	if err != nil {
		return nil, errf(roomID, "commit events: %w", err)
	}
	var eid []byte
	var ev string
	if _, err := pgx.ForEachRow(rows, []any{&eid, &ev}, func() error {
		r.m.SetCommitEvent(epochs.ID(eid), ev)
		return nil
	}); err != nil {
		return nil, errf(roomID, "commit events: %w", err)
	}
	return r, nil
}

// loadEpoch reads one epoch's shared state and our devices' private parts.
func (s *Service) loadEpoch(ctx context.Context, q database.Querier, roomID id.RoomID, epoch epochs.ID) (*epochs.State, error) {
	var static, init, secrets []byte
	err := q.QueryRow(ctx, `SELECT static, init, secrets FROM dmls_epoch WHERE room_id = $1 AND epoch_id = $2`,
		roomID, []byte(epoch)).Scan(&static, &init, &secrets)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errf(roomID, "epoch %v is in the graph but not stored", epoch)
	}
	if err != nil {
		return nil, errf(roomID, "read epoch %v: %w", epoch, err)
	}
	open := func(p seal.Purpose, part string, sealed []byte) ([]byte, error) {
		return s.cfg.Sealer.Open(p, epochRow(roomID, epoch, part), sealed)
	}
	if static, err = open(purposeEpochStatic, "static", static); err != nil {
		return nil, err
	}
	if init, err = open(purposeEpochInit, "init", init); err != nil {
		return nil, err
	}
	if secrets, err = open(purposeEpochSecrets, "secrets", secrets); err != nil {
		return nil, err
	}
	pub, err := group.UnmarshalPublicParts(static, init, secrets)
	if err != nil {
		return nil, errf(roomID, "epoch %v: %w", epoch, err)
	}
	st := &epochs.State{Public: pub, Privates: map[epochs.Device]*group.Private{}}
	rows, err := q.Query(ctx, `SELECT user_id, device_id, private FROM dmls_epoch_device WHERE room_id = $1 AND epoch_id = $2`,
		roomID, []byte(epoch))
	if err != nil {
		return nil, errf(roomID, "read privates of %v: %w", epoch, err)
	}
	var d epochs.Device
	var sealed []byte
	if _, err := pgx.ForEachRow(rows, []any{&d.UserID, &d.DeviceID, &sealed}, func() error {
		plain, err := s.cfg.Sealer.Open(purposeEpochPrivate, privateRow(roomID, epoch, d), sealed)
		if err != nil {
			return err
		}
		priv, err := group.UnmarshalPrivate(plain)
		if err != nil {
			return fmt.Errorf("private of %v: %w", d, err)
		}
		st.Privates[d] = priv
		return nil
	}); err != nil {
		return nil, errf(roomID, "epoch %v: %w", epoch, err)
	}
	return st, nil
}

// saveRoom writes what the operation changed: new epochs, the parts of
// existing ones that changed, privates added or removed, dropped epochs,
// and the graph.
func (s *Service) saveRoom(ctx context.Context, q database.Querier, r *room) error {
	ch := r.m.Changes()
	seal := func(p seal.Purpose, epoch epochs.ID, part string, b []byte) ([]byte, error) {
		return s.cfg.Sealer.Seal(p, epochRow(r.id, epoch, part), b)
	}
	for _, epoch := range ch.Dropped {
		if _, err := q.Exec(ctx, `DELETE FROM dmls_epoch WHERE room_id = $1 AND epoch_id = $2`, r.id, []byte(epoch)); err != nil {
			return errf(r.id, "drop epoch %v: %w", epoch, err)
		}
		if _, err := q.Exec(ctx, `DELETE FROM dmls_commit_event WHERE room_id = $1 AND epoch_id = $2`, r.id, []byte(epoch)); err != nil {
			return errf(r.id, "drop epoch %v: %w", epoch, err)
		}
	}
	for _, e := range ch.Epochs {
		pub := e.State.Public
		if e.New {
			static, err := pub.MarshalStatic()
			if err != nil {
				return errf(r.id, "encode epoch %v: %w", e.ID, err)
			}
			init, err := pub.MarshalInitState()
			if err != nil {
				return errf(r.id, "encode epoch %v: %w", e.ID, err)
			}
			secrets, err := pub.MarshalSecretTree()
			if err != nil {
				return errf(r.id, "encode epoch %v: %w", e.ID, err)
			}
			if static, err = seal(purposeEpochStatic, e.ID, "static", static); err != nil {
				return err
			}
			if init, err = seal(purposeEpochInit, e.ID, "init", init); err != nil {
				return err
			}
			if secrets, err = seal(purposeEpochSecrets, e.ID, "secrets", secrets); err != nil {
				return err
			}
			if _, err := q.Exec(ctx, `INSERT INTO dmls_epoch (room_id, epoch_id, number, static, init, secrets)
				VALUES ($1, $2, $3, $4, $5, $6)`, r.id, []byte(e.ID), int64(pub.Epoch()), static, init, secrets); err != nil {
				return errf(r.id, "store epoch %v: %w", e.ID, err)
			}
		} else {
			if e.Init {
				init, err := pub.MarshalInitState()
				if err == nil {
					init, err = seal(purposeEpochInit, e.ID, "init", init)
				}
				if err != nil {
					return errf(r.id, "encode epoch %v: %w", e.ID, err)
				}
				if _, err := q.Exec(ctx, `UPDATE dmls_epoch SET init = $3 WHERE room_id = $1 AND epoch_id = $2`,
					r.id, []byte(e.ID), init); err != nil {
					return errf(r.id, "store epoch %v: %w", e.ID, err)
				}
			}
			if e.Secrets {
				secrets, err := pub.MarshalSecretTree()
				if err == nil {
					secrets, err = seal(purposeEpochSecrets, e.ID, "secrets", secrets)
				}
				if err != nil {
					return errf(r.id, "encode epoch %v: %w", e.ID, err)
				}
				if _, err := q.Exec(ctx, `UPDATE dmls_epoch SET secrets = $3 WHERE room_id = $1 AND epoch_id = $2`,
					r.id, []byte(e.ID), secrets); err != nil {
					return errf(r.id, "store epoch %v: %w", e.ID, err)
				}
			}
		}
		for _, d := range e.RemovedPrivates {
			if _, err := q.Exec(ctx, `DELETE FROM dmls_epoch_device WHERE room_id = $1 AND epoch_id = $2 AND user_id = $3 AND device_id = $4`,
				r.id, []byte(e.ID), d.UserID, d.DeviceID); err != nil {
				return errf(r.id, "drop private of %v in %v: %w", d, e.ID, err)
			}
		}
		for _, d := range e.AddedPrivates {
			plain, err := e.State.Privates[d].MarshalBinary()
			if err != nil {
				return errf(r.id, "encode private of %v: %w", d, err)
			}
			sealed, err := s.cfg.Sealer.Seal(purposeEpochPrivate, privateRow(r.id, e.ID, d), plain)
			if err != nil {
				return err
			}
			if _, err := q.Exec(ctx, `INSERT INTO dmls_epoch_device (room_id, epoch_id, user_id, device_id, private)
				VALUES ($1, $2, $3, $4, $5)`, r.id, []byte(e.ID), d.UserID, d.DeviceID, sealed); err != nil {
				return errf(r.id, "store private of %v in %v: %w", d, e.ID, err)
			}
		}
	}
	if !ch.Graph {
		return nil
	}
	graph, err := r.m.MarshalMeta()
	if err != nil {
		return errf(r.id, "encode graph: %w", err)
	}
	if _, err := q.Exec(ctx, `UPDATE dmls_room SET graph = $2, state = $3, updated_at = now() WHERE room_id = $1`,
		r.id, graph, r.state); err != nil {
		return errf(r.id, "store graph: %w", err)
	}
	return nil
}
