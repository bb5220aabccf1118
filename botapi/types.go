package botapi

import (
	"encoding/json"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/groups"
)

// The bot API's own wire types: requests are decoded into these, answers
// encoded from them, so that the API stays as documented (openapi.json)
// whatever groups' types become.

type createPuppetRequest struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	AvatarURL   string `json:"avatar_url"`
	DeviceID    string `json:"device_id"`
}

// Puppet is a bot's puppet.
type Puppet struct {
	UserID  id.UserID     `json:"user_id"`
	Devices []id.DeviceID `json:"devices"`
}

type addDeviceRequest struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name"`
}

type createRoomRequest struct {
	Name     string   `json:"name"`
	Topic    string   `json:"topic"`
	Invite   []string `json:"invite"`
	Preset   string   `json:"preset"`
	DeviceID string   `json:"device_id"`
}

type joinRequest struct {
	Via []string `json:"via"`
}

type userRequest struct {
	UserID string `json:"user_id"`
	Reason string `json:"reason"`
}

type sendRequest struct {
	Type     string          `json:"type"`
	Content  json.RawMessage `json:"content"`
	DeviceID string          `json:"device_id"`
}

// SendResult is what a send did.
type SendResult struct {
	RoomID id.RoomID `json:"room_id"`
	// EventID is empty if the homeserver had not answered within
	// groups.send_timeout; the message is sent all the same.
	EventID id.EventID `json:"event_id,omitempty"`
	TxnID   string     `json:"txn_id"`
	// Replayed is true when the Idempotency-Key was seen before and this
	// is the first request's result (nothing was sent again).
	Replayed bool `json:"replayed"`
}

// RoomMembership is one room a puppet is or was in.
type RoomMembership struct {
	RoomID     id.RoomID `json:"room_id"`
	Membership string    `json:"membership"`
	DMLS       bool      `json:"dmls"`
}

// RoomState is a DMLS room's MLS state as the service holds it.
type RoomState struct {
	RoomID        id.RoomID         `json:"room_id"`
	State         string            `json:"state"`
	Epoch         uint64            `json:"epoch"`
	EpochID       string            `json:"epoch_id"`
	Authenticator string            `json:"authenticator"`
	Heads         []string          `json:"heads"`
	Converged     bool              `json:"converged"`
	Devices       []string          `json:"devices"`
	Members       map[string]string `json:"members"`
	// WithoutMLS are members (or "user|device") without a usable MLS
	// device, left out of the group.
	WithoutMLS []string `json:"members_without_mls"`
}

func roomState(info *groups.RoomInfo) RoomState {
	return RoomState{RoomID: info.RoomID, State: info.State, Epoch: info.Epoch, EpochID: info.EpochID,
		Authenticator: info.Authenticator, Heads: nonNil(info.Heads), Converged: info.Converged,
		Devices: nonNil(info.Devices), Members: info.Members, WithoutMLS: nonNil(info.LeftOut)}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Event is one delivered event as a bot receives it: on the event
// stream, in a webhook's body, and in a room's history.
type Event struct {
	// ID is the event's place in the bot's event log (the SSE id and the
	// webhook's X-MLS-Event-ID); empty in a room's history.
	ID string `json:"id,omitempty"`
	// Puppet received it; Seq is its place in that puppet's log.
	Puppet         id.UserID       `json:"puppet"`
	Seq            int64           `json:"seq"`
	Kind           string          `json:"kind"`
	RoomID         id.RoomID       `json:"room_id"`
	EventID        id.EventID      `json:"event_id"`
	Sender         id.UserID       `json:"sender"`
	SenderDevice   id.DeviceID     `json:"sender_device,omitempty"`
	Type           string          `json:"type"`
	Content        json.RawMessage `json:"content"`
	OriginServerTS int64           `json:"origin_server_ts"`
	DeliveredAt    time.Time       `json:"delivered_at"`
}

func eventOf(d groups.Delivered) Event {
	content := d.Content
	if len(content) == 0 {
		content = json.RawMessage("{}")
	}
	return Event{Puppet: d.Puppet, Seq: d.Seq, Kind: string(d.Kind), RoomID: d.RoomID, EventID: d.EventID,
		Sender: d.Sender, SenderDevice: d.SenderDevice, Type: d.Type, Content: content,
		OriginServerTS: d.OriginServerTS, DeliveredAt: d.DeliveredAt.UTC()}
}

type webhookRequest struct {
	URL string `json:"url"`
	// After, if set, starts deliveries after this event id (0: the whole
	// log); by default they start with the next event.
	After *int64 `json:"after"`
}

// WebhookStatus is a bot's webhook and how its deliveries go.
type WebhookStatus struct {
	URL string `json:"url"`
	// Secret is shown only in the answer to PUT /v1/webhook.
	Secret string `json:"secret,omitempty"`
	// Position is the last event id delivered (answered 2xx).
	Position int64 `json:"position"`
	// Pending counts events after Position.
	Pending       int64      `json:"pending"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	Parked        bool       `json:"parked"`
	ParkedAt      *time.Time `json:"parked_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	Delivered     int64      `json:"delivered"`
	Failures      int64      `json:"failures"`
}
