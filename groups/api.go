package groups

import (
	"context"
	"fmt"
	"strings"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/inbound"
)

// The Go API that the bot API and the client-server façade wrap. Room
// membership operations are the homeserver's: they are made as the puppet
// and answered synchronously, and their effect on the room's MLS group
// follows when their events come back (commits are made by the committer
// rule, DESIGN 5). Sending and reading are this package's own.

// Invite invites user to room as puppet by.
func (s *Service) Invite(ctx context.Context, by id.UserID, room id.RoomID, user id.UserID) error {
	if err := s.ownPuppet(by); err != nil {
		return err
	}
	return s.cfg.Puppets.InviteUser(ctx, by, room, user)
}

// Join joins puppet to room (through via, for a room of another server
// that our homeserver does not know yet).
func (s *Service) Join(ctx context.Context, puppet id.UserID, room id.RoomID, via []string) error {
	if err := s.ownPuppet(puppet); err != nil {
		return err
	}
	if len(via) == 0 {
		if _, server, ok := strings.Cut(string(room), ":"); ok && server != "" {
			via = []string{server}
		}
	}
	if err := s.cfg.Puppets.JoinRoom(ctx, puppet, room, via); err != nil {
		return err
	}
	// As after accepting an invitation (queueOwnJoin): the homeserver
	// may hold the join event back.
	ev := s.readOwnJoin(ctx, room, puppet)
	if ev == nil {
		return nil
	}
	return s.inWork(ctx, func(w *inbound.Work) error { return s.queueOwnJoin(ctx, w, *ev) })
}

// Leave makes puppet leave room (or reject its invitation).
func (s *Service) Leave(ctx context.Context, puppet id.UserID, room id.RoomID) error {
	if err := s.ownPuppet(puppet); err != nil {
		return err
	}
	return s.cfg.Puppets.LeaveRoom(ctx, puppet, room)
}

// Kick removes user from room as puppet by.
func (s *Service) Kick(ctx context.Context, by id.UserID, room id.RoomID, user id.UserID, reason string) error {
	if err := s.ownPuppet(by); err != nil {
		return err
	}
	return s.cfg.Puppets.KickUser(ctx, by, room, user, reason)
}

func (s *Service) ownPuppet(u id.UserID) error {
	if !s.cfg.Puppets.Owns(u) || u == s.cfg.Puppets.BotID() {
		return fmt.Errorf("%s: %w", u, ErrNotPuppet)
	}
	return nil
}
