package botapi

import (
	"fmt"
	"net/http"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/groups"
)

func (s *Server) createRoom(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return err
	}
	var req createRoomRequest
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &req, true); e != nil {
		return e
	}
	if e := checkText("name", req.Name, 256); e != nil {
		return e
	}
	if e := checkText("topic", req.Topic, 4096); e != nil {
		return e
	}
	switch req.Preset {
	case "", "private_chat", "trusted_private_chat", "public_chat":
	default:
		return badField("preset", "preset must be private_chat, trusted_private_chat or public_chat")
	}
	if len(req.Invite) > 1000 {
		return badField("invite", "invite lists at most 1000 users")
	}
	opts := groups.CreateRoomOptions{Name: req.Name, Topic: req.Topic, Preset: req.Preset}
	for i, u := range req.Invite {
		user, e := checkUserID(fmt.Sprintf("invite[%d]", i), u)
		if e != nil {
			return e
		}
		opts.Invite = append(opts.Invite, user)
	}
	var device id.DeviceID
	if req.DeviceID != "" {
		var e *Error
		if device, e = checkDeviceID("device_id", req.DeviceID); e != nil {
			return e
		}
	}
	room, err := s.cfg.Groups.CreateRoom(r.Context(), puppet, device, opts)
	if err != nil {
		return classify(err, "device_id")
	}
	s.log.Info().Str("bot", bot).Stringer("puppet", puppet).Stringer("room", room).Msg("Bot created a room")
	writeJSON(w, http.StatusCreated, map[string]any{"room_id": room})
	return nil
}

func (s *Server) listRooms(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return err
	}
	if e := checkQuery(r); e != nil {
		return e
	}
	ms, err := s.cfg.Groups.Memberships(r.Context(), puppet)
	if err != nil {
		return err
	}
	out := make([]RoomMembership, 0, len(ms))
	for _, m := range ms {
		out = append(out, RoomMembership{RoomID: m.RoomID, Membership: m.Membership, DMLS: m.DMLS})
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": out})
	return nil
}

// roomOf reads the {puppet} and {room} path values and checks that the
// bot owns the puppet and that the puppet's membership in the room is one
// of allowed (any membership it ever had if allowed is empty). A room we
// never saw the puppet in is unknown_room if it is not a DMLS room of
// ours, not_in_room otherwise.
func (s *Server) roomOf(r *http.Request, bot string, allowed ...string) (id.UserID, id.RoomID, error) {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return "", "", err
	}
	room, e := checkRoomID("room", r.PathValue("room"))
	if e != nil {
		return "", "", e
	}
	membership, dmls, err := s.cfg.Groups.MembershipIn(r.Context(), room, puppet)
	if err != nil {
		return "", "", err
	}
	if membership == "" && !dmls {
		return "", "", apiErr(http.StatusNotFound, CodeUnknownRoom, "room", "%s is not a room this service knows", room)
	}
	ok := membership != "" && len(allowed) == 0
	for _, a := range allowed {
		ok = ok || membership == a
	}
	if !ok {
		if membership == "" {
			membership = "none"
		}
		return "", "", apiErr(http.StatusForbidden, CodeNotInRoom, "room", "%s is not in %s (membership: %s)", puppet, room, membership)
	}
	return puppet, room, nil
}

// roomInfo is the MLS state of the {room} that the {puppet} is joined to
// or invited to.
func (s *Server) roomInfo(r *http.Request, bot string) (*groups.RoomInfo, error) {
	_, room, err := s.roomOf(r, bot, "join", "invite")
	if err != nil {
		return nil, err
	}
	info, err := s.cfg.Groups.Room(r.Context(), room)
	if err != nil {
		return nil, classify(err, "room")
	}
	return info, nil
}

func (s *Server) getRoom(w http.ResponseWriter, r *http.Request, bot string) error {
	info, err := s.roomInfo(r, bot)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, roomState(info))
	return nil
}

func (s *Server) roomMembers(w http.ResponseWriter, r *http.Request, bot string) error {
	info, err := s.roomInfo(r, bot)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": info.Members, "members_without_mls": nonNil(info.LeftOut)})
	return nil
}

func (s *Server) join(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, err := s.ownPuppet(r, bot)
	if err != nil {
		return err
	}
	room, e := checkRoomID("room", r.PathValue("room"))
	if e != nil {
		return e
	}
	var req joinRequest
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &req, true); e != nil {
		return e
	}
	if len(req.Via) > 20 {
		return badField("via", "via lists at most 20 servers")
	}
	for i, v := range req.Via {
		if !serverPattern.MatchString(v) || len(v) > 255 {
			return badField(fmt.Sprintf("via[%d]", i), "via[%d] must be a server name", i)
		}
	}
	if err := s.cfg.Groups.Join(r.Context(), puppet, room, req.Via); err != nil {
		return classify(err, "room")
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": room})
	return nil
}

func (s *Server) leave(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, room, err := s.roomOf(r, bot, "join", "invite", "knock")
	if err != nil {
		return err
	}
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &struct{}{}, true); e != nil {
		return e
	}
	if err := s.cfg.Groups.Leave(r.Context(), puppet, room); err != nil {
		return classify(err, "room")
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": room})
	return nil
}

// userAction decodes {user_id, reason} for invite and kick.
func (s *Server) userAction(r *http.Request, reasonOK bool) (id.UserID, string, error) {
	var req userRequest
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &req, false); e != nil {
		return "", "", e
	}
	user, e := checkUserID("user_id", req.UserID)
	if e != nil {
		return "", "", e
	}
	if req.Reason != "" && !reasonOK {
		return "", "", apiErr(http.StatusBadRequest, CodeUnknownField, "reason", "an invitation takes no reason")
	}
	if e := checkText("reason", req.Reason, 1024); e != nil {
		return "", "", e
	}
	return user, req.Reason, nil
}

func (s *Server) invite(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, room, err := s.roomOf(r, bot, "join")
	if err != nil {
		return err
	}
	user, _, err := s.userAction(r, false)
	if err != nil {
		return err
	}
	if err := s.cfg.Groups.Invite(r.Context(), puppet, room, user); err != nil {
		return classify(err, "user_id")
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": room, "user_id": user})
	return nil
}

func (s *Server) kick(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, room, err := s.roomOf(r, bot, "join")
	if err != nil {
		return err
	}
	user, reason, err := s.userAction(r, true)
	if err != nil {
		return err
	}
	if err := s.cfg.Groups.Kick(r.Context(), puppet, room, user, reason); err != nil {
		return classify(err, "user_id")
	}
	writeJSON(w, http.StatusOK, map[string]any{"room_id": room, "user_id": user})
	return nil
}

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 200

// send encrypts and sends a message as the puppet. With an
// Idempotency-Key, a retried request returns the first request's result
// and sends nothing again; keys are the bot's own (prefixed with its
// name, which contains no '/').
func (s *Server) send(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, room, err := s.roomOf(r, bot, "join")
	if err != nil {
		return err
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		return badField("Idempotency-Key", "Idempotency-Key is longer than %d bytes", maxIdempotencyKey)
	}
	for _, c := range []byte(key) {
		if c < 0x21 || c > 0x7e {
			return badField("Idempotency-Key", "Idempotency-Key must be printable ASCII without spaces")
		}
	}
	var req sendRequest
	if e := decodeBody(r, s.cfg.Settings.MaxBodyBytes, &req, false); e != nil {
		return e
	}
	if req.Type == "" {
		return missing("type")
	}
	if !eventTypePat.MatchString(req.Type) {
		return badField("type", "type must be an event type like m.room.message (1 to 255 of A-Z, a-z, 0-9 and ._-)")
	}
	if len(req.Content) == 0 || string(req.Content) == "null" {
		return missing("content")
	}
	if req.Content[0] != '{' {
		return badField("content", "content must be a JSON object")
	}
	var device id.DeviceID
	if req.DeviceID != "" {
		var e *Error
		if device, e = checkDeviceID("device_id", req.DeviceID); e != nil {
			return e
		}
	}
	scoped := ""
	if key != "" {
		scoped = bot + "/" + key
	}
	res, err := s.cfg.Groups.Send(r.Context(), puppet, device, room, req.Type, req.Content, scoped)
	if err != nil {
		return classify(err, "room")
	}
	writeJSON(w, http.StatusOK, SendResult{RoomID: room, EventID: res.EventID, TxnID: res.TxnID})
	return nil
}

// history returns the room's events as delivered to the puppet, newest
// first, paginated backwards with before.
func (s *Server) history(w http.ResponseWriter, r *http.Request, bot string) error {
	puppet, room, err := s.roomOf(r, bot)
	if err != nil {
		return err
	}
	if e := checkQuery(r, "before", "limit"); e != nil {
		return e
	}
	before, e := queryInt(r, "before", 0, 0, 1<<62)
	if e != nil {
		return e
	}
	limit, e := queryInt(r, "limit", 100, 1, 1000)
	if e != nil {
		return e
	}
	got, err := s.cfg.Groups.RoomLog(r.Context(), puppet, room, before, int(limit))
	if err != nil {
		return err
	}
	out := map[string]any{"events": []Event{}}
	events := make([]Event, 0, len(got))
	for _, d := range got {
		events = append(events, eventOf(d))
	}
	out["events"] = events
	if len(got) == int(limit) {
		out["next_before"] = got[len(got)-1].Seq
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
