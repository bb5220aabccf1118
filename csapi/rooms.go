package csapi

import (
	"encoding/json"
	"net/http"

	"maunium.net/go/mautrix/id"
)

// createRequest is a createRoom body as far as the façade reads it; every
// other field passes through unchanged.
type createRequest struct {
	fields  map[string]json.RawMessage
	content map[string]json.RawMessage
	state   []json.RawMessage
}

// parseCreateRoom reads a createRoom body.
func parseCreateRoom(body []byte) (*createRequest, *matrixError) {
	req := &createRequest{}
	if err := json.Unmarshal(body, &req.fields); err != nil || req.fields == nil {
		return nil, mxErr(http.StatusBadRequest, errNotJSON, "the createRoom body is not a JSON object")
	}
	if raw, ok := req.fields["creation_content"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &req.content); err != nil || req.content == nil {
			return nil, mxErr(http.StatusBadRequest, errBadJSON, "creation_content must be an object")
		}
	}
	if raw, ok := req.fields["initial_state"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &req.state); err != nil {
			return nil, mxErr(http.StatusBadRequest, errBadJSON, "initial_state must be an array of state events")
		}
	}
	return req, nil
}

// isEncryptionState reports whether an initial state event is
// m.room.encryption.
func isEncryptionState(raw json.RawMessage) bool {
	var ev struct {
		Type string `json:"type"`
	}
	return json.Unmarshal(raw, &ev) == nil && ev.Type == "m.room.encryption"
}

// asksForEncryption reports whether the request asks for an encrypted
// room: SDKs do it with an m.room.encryption initial state event
// (matrix-nio's EnableEncryptionBuilder, matrix-bot-sdk's initial_state),
// or a creation_content encryption as DMLS rooms have.
func (c *createRequest) asksForEncryption() bool {
	if _, ok := c.content["encryption"]; ok {
		return true
	}
	for _, ev := range c.state {
		if isEncryptionState(ev) {
			return true
		}
	}
	return false
}

// makeDMLS turns the request into one for a DMLS room: creation adds to
// creation_content (overriding what the bot put under the same keys), and
// m.room.encryption leaves the initial state, since DMLS rooms say they
// are encrypted in their create event, and Megolm clients must not think
// the room is theirs.
func (c *createRequest) makeDMLS(creation map[string]any) ([]byte, error) {
	if c.content == nil {
		c.content = map[string]json.RawMessage{}
	}
	for k, v := range creation {
		if err := set(c.content, k, v); err != nil {
			return nil, err
		}
	}
	if err := set(c.fields, "creation_content", c.content); err != nil {
		return nil, err
	}
	if c.state != nil {
		kept := c.state[:0:0]
		for _, ev := range c.state {
			if !isEncryptionState(ev) {
				kept = append(kept, ev)
			}
		}
		if err := set(c.fields, "initial_state", kept); err != nil {
			return nil, err
		}
	}
	return json.Marshal(c.fields)
}

// createRoom serves POST /createRoom: the bot's request, made a DMLS
// room's (csapi.create_rooms: all, or requested when it asks for
// encryption), created as the puppet's device, whose group holds the
// room's first epoch. The answer waits (up to groups.send_timeout) for
// the group, so that the bot's first send finds it.
func (s *Server) createRoom(w http.ResponseWriter, r *http.Request, a *access) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	req, e := parseCreateRoom(body)
	if e != nil {
		s.cfg.Metrics.Malformed.WithLabelValues("request").Inc()
		return e
	}
	dmls := s.cfg.Settings.CreateRooms == "all" || req.asksForEncryption()
	if dmls {
		creation, _, err := s.cfg.Groups.CreationContent(r.Context(), a.UserID, a.DeviceID)
		if err != nil {
			return err
		}
		if body, err = req.makeDMLS(creation); err != nil {
			return err
		}
	}
	ans, err := s.call(r.Context(), a, http.MethodPost, r.URL.EscapedPath(), r.URL.Query(), body)
	if err != nil {
		return err
	}
	if dmls && ans.status == http.StatusOK {
		var created struct {
			RoomID id.RoomID `json:"room_id"`
		}
		if err := json.Unmarshal(ans.body, &created); err != nil || created.RoomID == "" {
			s.cfg.Metrics.Malformed.WithLabelValues("homeserver").Inc()
			return errMalformed("createRoom")
		}
		if !s.cfg.Groups.WaitActive(r.Context(), created.RoomID) {
			s.log.Warn().Stringer("room_id", created.RoomID).Stringer("puppet", a.UserID).
				Msg("DMLS room created, but its group was not made within groups.send_timeout; sends will wait for it")
		}
	}
	relay(w, ans)
	return nil
}
