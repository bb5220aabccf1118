package groups

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
	"github.com/mls-appservice/mls-appservice/seal"
)

// Errors of the API that callers map to answers.
var (
	// ErrNotDMLS: the room is not a DMLS room we know.
	ErrNotDMLS = errors.New("not a DMLS room of this service")
	// ErrNotInGroup: the puppet has no device in the room's MLS group
	// (not joined yet, or its Welcome has not arrived).
	ErrNotInGroup = errors.New("puppet has no device in the room's MLS group")
	// ErrNoDevice: the puppet has no device with an MLS identity.
	ErrNoDevice = errors.New("puppet has no MLS device")
)

// SendResult is what Send did: the outbox transaction id that sends the
// event, and its event id once the homeserver gave one (empty if that
// took longer than groups.send_timeout; the event is still sent).
type SendResult struct {
	TxnID   string      `json:"txn_id"`
	EventID id.EventID  `json:"event_id,omitempty"`
	RoomID  id.RoomID   `json:"room_id"`
	Device  id.DeviceID `json:"device"`
}

func sentRow(digest []byte) seal.Binding { return seal.Row("dmls_sent", hex.EncodeToString(digest)) }

// Send encrypts an event as puppet (with device, or the puppet's first
// device in the room's group if empty) in the room's base epoch and sends
// it as m.room.encrypted through the outbox. A non-empty idempotencyKey
// makes a retried request return the first result without sending again;
// keys are global, so callers scope them (the bot API prefixes the bot).
func (s *Service) Send(ctx context.Context, puppet id.UserID, device id.DeviceID, roomID id.RoomID, eventType string,
	content json.RawMessage, idempotencyKey string) (SendResult, error) {
	if err := s.ownPuppet(puppet); err != nil {
		return SendResult{}, err
	}
	if err := inbound.CheckText("event type", eventType, inbound.MaxTypeBytes); err != nil || eventType == "" {
		return SendResult{}, fmt.Errorf("event type: %w", inbound.ErrInvalid)
	}
	if !isObject(content) || !json.Valid(content) {
		return SendResult{}, fmt.Errorf("content is not a JSON object: %w", inbound.ErrInvalid)
	}
	res, err := s.send(ctx, puppet, device, roomID, eventType, content, idempotencyKey)
	if idempotencyKey != "" && database.IsUniqueViolation(err) {
		// A concurrent request with the same key committed first; this
		// one answers with its result.
		res, err = s.send(ctx, puppet, device, roomID, eventType, content, idempotencyKey)
	}
	if err != nil {
		return SendResult{}, err
	}
	s.cfg.Wake()
	res.EventID, err = s.waitSent(ctx, res.TxnID)
	return res, err
}

func (s *Service) send(ctx context.Context, puppet id.UserID, device id.DeviceID, roomID id.RoomID, eventType string,
	content json.RawMessage, idempotencyKey string) (SendResult, error) {
	res := SendResult{RoomID: roomID}
	var work *inbound.Work // what counts once the attempt that commits is done
	err := s.cfg.DB.InTxRetry(ctx, func(tx pgx.Tx) error {
		work = nil
		if err := database.WaitQueue(ctx, tx, roomQueue(roomID), database.Inbound); err != nil {
			return err
		}
		if idempotencyKey != "" {
			var room, user string
			err := tx.QueryRow(ctx, `SELECT room_id, user_id, txn_id FROM dmls_send WHERE idempotency_key = $1`, idempotencyKey).
				Scan(&room, &user, &res.TxnID)
			if err == nil {
				if room != string(roomID) || user != string(puppet) {
					return fmt.Errorf("idempotency key reused for another room or puppet: %w", inbound.ErrInvalid)
				}
				// The sending device, while the outbox still holds the row.
				err := tx.QueryRow(ctx, `SELECT device_id FROM outbox WHERE txn_id = $1`, res.TxnID).Scan(&res.Device)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("read send %s: %w", idempotencyKey, err)
				}
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("read send %s: %w", idempotencyKey, err)
			}
		}
		r, err := s.loadRoom(ctx, tx, roomID)
		if err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("%s: %w", roomID, ErrNotDMLS)
		}
		dev, ok := senderDevice(r, puppet, device)
		if !ok {
			return fmt.Errorf("%s in %s: %w", puppet, roomID, ErrNotInGroup)
		}
		res.Device = id.DeviceID(dev.DeviceID)
		plain, err := json.Marshal(Plaintext{Type: eventType, Content: content, RoomID: string(roomID)})
		if err != nil {
			return err
		}
		out := database.NewProducer(tx)
		if res.TxnID, err = s.queueMessage(ctx, tx, out, r, puppet, dev, plain, ""); err != nil {
			return err
		}
		if idempotencyKey != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO dmls_send (idempotency_key, room_id, user_id, txn_id) VALUES ($1, $2, $3, $4)`,
				idempotencyKey, roomID, puppet, res.TxnID); err != nil {
				return fmt.Errorf("record send %s: %w", idempotencyKey, err)
			}
		}
		work = &inbound.Work{Q: tx, Out: out}
		if err := s.saveRoom(ctx, work, r); err != nil {
			return err
		}
		work.Count(s.metrics.MessagesSent, 1)
		return out.Flush(ctx)
	})
	if err == nil && work != nil {
		work.Committed()
	}
	return res, err
}

// queueMessage encrypts plain as our device dev of puppet in the loaded
// room's base epoch, queues the event in out (after our own base commit's
// event if that is not sent yet) and records the message (sealed) for
// its echo. resendOf, if not empty, is the event this one sends again
// (resend). It returns the outbox transaction id.
func (s *Service) queueMessage(ctx context.Context, q database.Querier, out *database.Producer, r *room, puppet id.UserID,
	dev epochs.Device, plain []byte, resendOf id.EventID) (string, error) {
	epoch, ct, err := r.m.Encrypt(dev, plain)
	if err != nil {
		return "", errf(r.id, "encrypt: %w", err)
	}
	creator, commitEvent, after, err := s.epochRef(ctx, q, r, epoch)
	if err != nil {
		return "", err
	}
	body, err := json.Marshal(wireEncrypted{Algorithm: keys.Algorithm(s.suite.ID()), Ciphertext: b64(ct),
		EpochCreator: (*deviceJSON)(&creator), CommitEvent: commitEvent, Epoch: (*b64ID)(&epoch)})
	if err != nil {
		return "", err
	}
	ev := database.OutgoingEvent{Kind: database.RoomEvent, UserID: string(puppet), DeviceID: dev.DeviceID,
		RoomID: string(r.id), EventType: EncryptedType, Content: body}
	if after != 0 {
		ev.After, ev.FillField = after, "commit_event"
	}
	_, txnID, err := out.AddOutgoing(ctx, ev)
	if err != nil {
		return "", err
	}
	digest := sha256.Sum256(ct)
	sealed, err := s.cfg.Sealer.Seal(purposeSent, sentRow(digest[:]), plain)
	if err != nil {
		return "", err
	}
	var resend *string
	if resendOf != "" {
		resend = (*string)(&resendOf)
	}
	if _, err := q.Exec(ctx, `INSERT INTO dmls_sent (digest, room_id, user_id, device_id, plaintext, resend_of) VALUES ($1, $2, $3, $4, $5, $6)`,
		digest[:], r.id, puppet, dev.DeviceID, sealed, resend); err != nil {
		return "", errf(r.id, "record own message: %w", err)
	}
	return txnID, nil
}

// waitSent waits up to SendTimeout for the outbox to send txnID and
// returns its event id ("" if it is not sent yet).
func (s *Service) waitSent(ctx context.Context, txnID string) (id.EventID, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 500*time.Millisecond) {
		ev, sent, err := database.OutgoingByTxnID(ctx, s.cfg.DB, txnID)
		if err == nil && sent {
			return id.EventID(ev), nil
		}
		select {
		case <-ctx.Done():
			return "", nil
		case <-time.After(delay):
		}
	}
}

// CreateRoomOptions describe a new DMLS room.
type CreateRoomOptions struct {
	Name   string
	Topic  string
	Invite []id.UserID
	// Preset is the homeserver's room preset (private_chat by default).
	Preset string
}

// CreateRoom creates a DMLS room as puppet's device (its first if empty):
// m.room.create names the DMLS algorithm and the device that holds the
// group's first epoch. The group is made when the create event comes back
// (so a crash between the two loses nothing); CreateRoom waits for it up
// to groups.send_timeout.
func (s *Service) CreateRoom(ctx context.Context, puppet id.UserID, device id.DeviceID, o CreateRoomOptions) (id.RoomID, error) {
	creation, device, err := s.CreationContent(ctx, puppet, device)
	if err != nil {
		return "", err
	}
	preset := o.Preset
	if preset == "" {
		preset = "private_chat"
	}
	roomID, err := s.cfg.Puppets.CreateRoom(ctx, puppet, device, &mautrix.ReqCreateRoom{Name: o.Name, Topic: o.Topic,
		Preset: preset, Invite: o.Invite, CreationContent: creation})
	if err != nil {
		return "", err
	}
	s.WaitActive(ctx, roomID)
	return roomID, nil
}

// RoomInfo is the MLS state of a room as our service holds it.
type RoomInfo struct {
	RoomID id.RoomID `json:"room_id"`
	State  string    `json:"state"`
	// Epoch is the base epoch's number, EpochID its dmls_epoch, and
	// Authenticator its epoch authenticator (hex), which every member of
	// the epoch computes alike.
	Epoch         uint64   `json:"epoch"`
	EpochID       string   `json:"epoch_id"`
	Authenticator string   `json:"authenticator"`
	Heads         []string `json:"heads"`
	Converged     bool     `json:"converged"`
	// Devices are the group's devices in the base epoch; Ours those of
	// them that are ours.
	Devices []string `json:"devices"`
	Ours    []string `json:"ours"`
	// Members is the room's membership; LeftOut the joined or invited
	// users (or "user|device") without a usable MLS device.
	Members map[string]string `json:"members"`
	LeftOut []string          `json:"left_out"`
	// Parked counts the room's work items set aside with an error.
	Parked int `json:"parked"`
}

// senderDevice picks the device puppet sends with: device if it is in the
// base epoch's group, or the puppet's first device there if device is
// empty.
func senderDevice(r *room, puppet id.UserID, device id.DeviceID) (epochs.Device, bool) {
	for _, d := range r.ours() {
		if d.UserID == string(puppet) && (device == "" || d.DeviceID == string(device)) {
			return d, true
		}
	}
	return epochs.Device{}, false
}

// Room returns the MLS state of a room.
func (s *Service) Room(ctx context.Context, roomID id.RoomID) (*RoomInfo, error) {
	var info *RoomInfo
	err := s.cfg.DB.InTxRetry(ctx, func(tx pgx.Tx) error {
		if err := database.WaitQueue(ctx, tx, roomQueue(roomID), database.Inbound); err != nil {
			return err
		}
		r, err := s.loadRoom(ctx, tx, roomID)
		if err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("%s: %w", roomID, ErrNotDMLS)
		}
		info = &RoomInfo{RoomID: roomID, State: r.state, Members: map[string]string{}}
		m, err := members(ctx, tx, roomID)
		if err != nil {
			return err
		}
		for u, st := range m {
			info.Members[u] = string(st)
		}
		rows, err := tx.Query(ctx, `SELECT user_id FROM dmls_left_out WHERE room_id = $1 ORDER BY 1`, roomID)
		if err != nil {
			return err
		}
		if info.LeftOut, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM work_item WHERE queue = $1 AND parked`, roomQueue(roomID)).
			Scan(&info.Parked); err != nil {
			return err
		}
		if !r.held() {
			return nil
		}
		for _, h := range r.m.Graph().Heads() {
			info.Heads = append(info.Heads, h.String())
		}
		info.Converged = len(info.Heads) == 1
		base, ours, err := r.base()
		if err != nil {
			return err
		}
		pub, err := r.m.Public(base)
		if err != nil {
			return err
		}
		info.Epoch, info.EpochID, info.Authenticator = pub.Epoch(), base.String(), hex.EncodeToString(pub.EpochAuthenticator())
		for _, d := range r.m.Devices(base) {
			info.Devices = append(info.Devices, d.String())
		}
		for _, d := range ours {
			info.Ours = append(info.Ours, d.String())
		}
		return nil
	})
	return info, err
}

// Rooms returns the MLS state of every DMLS room we know.
func (s *Service) Rooms(ctx context.Context) ([]*RoomInfo, error) {
	rows, err := s.cfg.DB.Query(ctx, `SELECT room_id FROM dmls_room ORDER BY room_id`)
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	var out []*RoomInfo
	for _, r := range ids {
		info, err := s.Room(ctx, id.RoomID(r))
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// EpochInfo is one epoch of a room's graph.
type EpochInfo struct {
	Number      uint64 `json:"number"`
	ID          string `json:"id"`
	Parent      string `json:"parent,omitempty"`
	Creator     string `json:"creator"`
	CommitEvent string `json:"commit_event,omitempty"`
	Retained    bool   `json:"retained"`
	Head        bool   `json:"head"`
	// Holders are our devices that hold private state in the epoch.
	Holders []string `json:"holders,omitempty"`
	// Devices counts the group's devices in the epoch (if retained).
	Devices int `json:"devices"`
}

// Graph returns a room's epoch graph as far as it reaches back from its
// heads, newest first.
func (s *Service) Graph(ctx context.Context, roomID id.RoomID) ([]EpochInfo, error) {
	var out []EpochInfo
	err := s.cfg.DB.InTxRetry(ctx, func(tx pgx.Tx) error {
		if err := database.WaitQueue(ctx, tx, roomQueue(roomID), database.Inbound); err != nil {
			return err
		}
		r, err := s.loadRoom(ctx, tx, roomID)
		if err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("%s: %w", roomID, ErrNotDMLS)
		}
		if !r.held() {
			return nil
		}
		heads := r.m.Graph().Heads()
		seen := map[epochs.ID]bool{}
		for _, h := range heads {
			for id := h; id != "" && !seen[id]; {
				seen[id] = true
				n, ok := r.node(id)
				if !ok {
					break
				}
				e := EpochInfo{Number: n.Number, ID: id.String(), Creator: n.Creator.String(), CommitEvent: n.CommitEvent,
					Retained: n.Retained, Head: slices.Contains(heads, id), Devices: len(r.m.Devices(id))}
				for _, d := range r.m.Holders(id) {
					e.Holders = append(e.Holders, d.String())
				}
				if n.Parent != "" {
					e.Parent = n.Parent.String()
				}
				out = append(out, e)
				id = n.Parent
			}
		}
		slices.SortFunc(out, func(a, b EpochInfo) int { return cmp.Compare(b.Number, a.Number) })
		return nil
	})
	return out, err
}
