package matrix

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// Room operations as a puppet, for package groups. They are synchronous
// calls (a bot waits for their answer); their effects come back as room
// events through the homeserver's transactions, which is where groups
// acts on them.

// CreateRoom creates a room as user's device with the given request and
// returns its id.
func (p *Puppets) CreateRoom(ctx context.Context, user id.UserID, device id.DeviceID, req *mautrix.ReqCreateRoom) (id.RoomID, error) {
	cli, err := p.Client(user, device)
	if err != nil {
		return "", err
	}
	resp, err := cli.CreateRoom(ctx, req)
	if err != nil {
		return "", fmt.Errorf("create room as %s: %w", user, err)
	}
	return resp.RoomID, nil
}

// JoinRoom joins user to room, through the given servers if the room is
// not known to our homeserver yet.
func (p *Puppets) JoinRoom(ctx context.Context, user id.UserID, room id.RoomID, via []string) error {
	cli, err := p.Client(user, "")
	if err != nil {
		return err
	}
	if _, err := cli.JoinRoom(ctx, string(room), &mautrix.ReqJoinRoom{Via: via}); err != nil {
		return fmt.Errorf("join %s as %s: %w", room, user, err)
	}
	return nil
}

// LeaveRoom makes user leave room (or reject its invite).
func (p *Puppets) LeaveRoom(ctx context.Context, user id.UserID, room id.RoomID) error {
	cli, err := p.Client(user, "")
	if err != nil {
		return err
	}
	if _, err := cli.LeaveRoom(ctx, room); err != nil {
		return fmt.Errorf("leave %s as %s: %w", room, user, err)
	}
	return nil
}

// InviteUser invites target to room as user.
func (p *Puppets) InviteUser(ctx context.Context, user id.UserID, room id.RoomID, target id.UserID) error {
	cli, err := p.Client(user, "")
	if err != nil {
		return err
	}
	if _, err := cli.InviteUser(ctx, room, &mautrix.ReqInviteUser{UserID: target}); err != nil {
		return fmt.Errorf("invite %s to %s as %s: %w", target, room, user, err)
	}
	return nil
}

// KickUser removes target from room as user.
func (p *Puppets) KickUser(ctx context.Context, user id.UserID, room id.RoomID, target id.UserID, reason string) error {
	cli, err := p.Client(user, "")
	if err != nil {
		return err
	}
	if _, err := cli.KickUser(ctx, room, &mautrix.ReqKickUser{UserID: target, Reason: reason}); err != nil {
		return fmt.Errorf("kick %s from %s as %s: %w", target, room, user, err)
	}
	return nil
}

// RoomState returns the room's current state events as user, raw: they
// come from the homeserver and package groups parses them.
func (p *Puppets) RoomState(ctx context.Context, user id.UserID, room id.RoomID) ([]json.RawMessage, error) {
	cli, err := p.Client(user, "")
	if err != nil {
		return nil, err
	}
	var events []json.RawMessage
	if _, err := cli.MakeRequest(ctx, http.MethodGet, cli.BuildClientURL("v3", "rooms", room, "state"), nil, &events); err != nil {
		return nil, fmt.Errorf("state of %s as %s: %w", room, user, err)
	}
	return events, nil
}

// MemberEvent returns target's current m.room.member event in room, raw,
// as user sees it (the whole event: format=event).
func (p *Puppets) MemberEvent(ctx context.Context, user id.UserID, room id.RoomID, target id.UserID) (json.RawMessage, error) {
	cli, err := p.Client(user, "")
	if err != nil {
		return nil, err
	}
	var ev json.RawMessage
	url := cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "rooms", room, "state", "m.room.member", target},
		map[string]string{"format": "event"})
	if _, err := cli.MakeRequest(ctx, http.MethodGet, url, nil, &ev); err != nil {
		return nil, fmt.Errorf("membership of %s in %s as %s: %w", target, room, user, err)
	}
	return ev, nil
}

// StateAt returns room's state at eventID as user's homeserver resolved
// it in the room's event graph, raw: /context with no surrounding events
// answers with the state at the event itself. Unlike the order in which
// events reached an appservice, it does not depend on when a partition
// healed: an event made on one side of a partition has the state that
// side had.
func (p *Puppets) StateAt(ctx context.Context, user id.UserID, room id.RoomID, eventID id.EventID) ([]json.RawMessage, error) {
	cli, err := p.Client(user, "")
	if err != nil {
		return nil, err
	}
	var resp struct {
		State []json.RawMessage `json:"state"`
	}
	url := cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "rooms", room, "context", eventID}, map[string]string{"limit": "0"})
	if _, err := cli.MakeRequest(ctx, http.MethodGet, url, nil, &resp); err != nil {
		return nil, fmt.Errorf("state of %s at %s as %s: %w", room, eventID, user, err)
	}
	return resp.State, nil
}

// Event fetches one event of room as user from its homeserver, raw.
// Synapse answers from its own database only (404 for an event it never
// received); Messages is what makes it fetch a gap over federation.
func (p *Puppets) Event(ctx context.Context, user id.UserID, room id.RoomID, eventID id.EventID) (json.RawMessage, error) {
	cli, err := p.Client(user, "")
	if err != nil {
		return nil, err
	}
	var ev json.RawMessage
	if _, err := cli.MakeRequest(ctx, http.MethodGet, cli.BuildClientURL("v3", "rooms", room, "event", eventID), nil, &ev); err != nil {
		return nil, fmt.Errorf("event %s of %s as %s: %w", eventID, room, user, err)
	}
	return ev, nil
}

// Messages returns one page of room's timeline as user, newest first
// (dir=b), starting at the pagination token from ("" for the room's
// latest event), and the token of the next, older page ("" at the
// room's start). Paginating backwards into a gap in the room's graph
// makes Synapse backfill the gap from other servers first.
func (p *Puppets) Messages(ctx context.Context, user id.UserID, room id.RoomID, from string, limit int) ([]json.RawMessage, string, error) {
	cli, err := p.Client(user, "")
	if err != nil {
		return nil, "", err
	}
	query := map[string]string{"dir": "b", "limit": strconv.Itoa(limit)}
	if from != "" {
		query["from"] = from
	}
	var page struct {
		Chunk []json.RawMessage `json:"chunk"`
		End   string            `json:"end"`
	}
	if _, err := cli.MakeRequest(ctx, http.MethodGet, cli.BuildURLWithQuery(mautrix.ClientURLPath{"v3", "rooms", room, "messages"}, query),
		nil, &page); err != nil {
		return nil, "", fmt.Errorf("messages of %s as %s: %w", room, user, err)
	}
	return page.Chunk, page.End, nil
}

// SetProfile sets user's display name and avatar (empty values are left
// alone).
func (p *Puppets) SetProfile(ctx context.Context, user id.UserID, displayName string, avatar id.ContentURIString) error {
	cli, err := p.Client(user, "")
	if err != nil {
		return err
	}
	if displayName != "" {
		if err := cli.SetDisplayName(ctx, displayName); err != nil {
			return fmt.Errorf("set display name of %s: %w", user, err)
		}
	}
	if avatar != "" {
		uri, err := avatar.Parse()
		if err != nil {
			return fmt.Errorf("avatar of %s: %w", user, err)
		}
		if err := cli.SetAvatarURL(ctx, uri); err != nil {
			return fmt.Errorf("set avatar of %s: %w", user, err)
		}
	}
	return nil
}

// DeleteDevice removes a puppet's device from the homeserver (MSC4190:
// the appservice deletes it without interactive authentication).
func (p *Puppets) DeleteDevice(ctx context.Context, user id.UserID, device id.DeviceID) error {
	cli, err := p.Client(user, "")
	if err != nil {
		return err
	}
	if _, err := cli.MakeRequest(ctx, http.MethodDelete, cli.BuildClientURL("v3", "devices", device), struct{}{}, nil); err != nil {
		return fmt.Errorf("delete device %s of %s: %w", device, user, err)
	}
	p.mu.Lock()
	delete(p.clients, deviceKey{user, device})
	p.mu.Unlock()
	return nil
}
