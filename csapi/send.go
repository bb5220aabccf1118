package csapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/groups"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// maxTxnID bounds a client's transaction id (the spec sets none; the
// homeserver's path limits are of the same order).
const maxTxnID = 255

// send serves PUT /rooms/{room}/send/{type}/{txn}: in a DMLS room the
// event is encrypted by groups and sent as the puppet's device; in any
// other room the request passes through. A repeated transaction id of the
// same device returns the first event id and sends nothing (the spec's
// idempotency), here and in groups, whose key it is too.
func (s *Server) send(w http.ResponseWriter, r *http.Request, a *access) error {
	room, eventType, txn := id.RoomID(r.PathValue("room")), r.PathValue("type"), r.PathValue("txn")
	if err := checkPathValue("room id", string(room)); err != nil || !strings.HasPrefix(string(room), "!") {
		return mxErr(http.StatusBadRequest, errInvalidParam, "malformed room id")
	}
	if err := checkPathValue("event type", eventType); err != nil {
		return mxErr(http.StatusBadRequest, errInvalidParam, "%v", err)
	}
	if err := checkPathValue("transaction id", txn); err != nil {
		return mxErr(http.StatusBadRequest, errInvalidParam, "%v", err)
	}
	dmls, err := s.isDMLS(r.Context(), a, room)
	if err != nil {
		return err
	}
	if !dmls {
		return s.passthrough(w, r, a)
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	var content map[string]json.RawMessage
	if err := json.Unmarshal(body, &content); err != nil || content == nil {
		s.cfg.Metrics.Malformed.WithLabelValues("request").Inc()
		return mxErr(http.StatusBadRequest, errNotJSON, "the event content is not a JSON object")
	}
	if eventType == groups.EncryptedType {
		return mxErr(http.StatusBadRequest, errForbidden,
			"this room is encrypted by the service (DMLS): send the plaintext event with the client's own encryption off")
	}
	eventID, err := s.sendDMLS(r.Context(), a, room, eventType, body, txn)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"event_id": string(eventID)})
	return nil
}

// sendWithoutTxn serves POST /rooms/{room}/send/{type}, which Synapse
// still takes: a send with a transaction id of its own, so never
// idempotent (as on the homeserver).
func (s *Server) sendWithoutTxn(w http.ResponseWriter, r *http.Request, a *access) error {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("transaction id: %w", err)
	}
	r.SetPathValue("txn", "csapi-post-"+hex.EncodeToString(b[:]))
	return s.send(w, r, a)
}

// checkPathValue refuses path values that are empty, too long, not UTF-8
// or hold control characters.
func checkPathValue(what, v string) error {
	if v == "" || len(v) > maxTxnID || !utf8.ValidString(v) {
		return fmt.Errorf("%s must be 1 to %d bytes of UTF-8", what, maxTxnID)
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("%s holds a control character", what)
		}
	}
	return nil
}

// sendDMLS sends an event through groups, waiting up to csapi.send_wait
// for the device to be in the room's group (it may have just joined) and
// for the event id.
func (s *Server) sendDMLS(ctx context.Context, a *access, room id.RoomID, eventType string, content json.RawMessage, txn string) (id.EventID, error) {
	var known *string
	err := s.cfg.DB.QueryRow(ctx, `SELECT event_id FROM csapi_txn WHERE user_id = $1 AND device_id = $2 AND room_id = $3 AND txn_id = $4`,
		a.UserID, a.DeviceID, room, txn).Scan(&known)
	switch {
	case err == nil && known != nil:
		return id.EventID(*known), nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("read transaction %s: %w", txn, err)
	}
	// groups' idempotency keys are global: scope ours by façade, puppet,
	// device and room, as the homeserver scopes transaction ids by access
	// token and path.
	key := "csapi|" + string(a.UserID) + "|" + string(a.DeviceID) + "|" + string(room) + "|" + txn
	deadline := s.cfg.Now().Add(s.cfg.Settings.SendWait.D())
	checkedMember := false
	for {
		woken := s.cfg.Groups.Wait(a.UserID)
		res, err := s.cfg.Groups.Send(ctx, a.UserID, a.DeviceID, room, eventType, content, key)
		if err == nil {
			if _, err := s.cfg.DB.Exec(ctx, `INSERT INTO csapi_txn (user_id, device_id, txn_id, room_id, outbox_txn, event_id)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, device_id, room_id, txn_id)
				DO UPDATE SET event_id = coalesce(csapi_txn.event_id, excluded.event_id)`,
				a.UserID, a.DeviceID, txn, room, res.TxnID, nullable(string(res.EventID))); err != nil {
				return "", fmt.Errorf("record transaction %s: %w", txn, err)
			}
			if res.EventID != "" {
				return res.EventID, nil
			}
		}
		var refused *matrixError
		switch {
		case err == nil:
			// Sent to the outbox; its event id is not back yet, or the
			// homeserver refused it for good (the puppet left the room
			// before groups saw it leave).
			if refusal, err := s.outboxRefusal(ctx, res.TxnID); err != nil {
				return "", err
			} else if refusal != "" {
				return "", mxErr(http.StatusForbidden, errForbidden, "the homeserver refused the encrypted event: %s", refusal)
			}
		case errors.Is(err, groups.ErrNotInGroup), errors.Is(err, groups.ErrNotDMLS):
			// Our device joins the group when a member commits it (the
			// room's create event may not even be processed yet), if
			// the puppet is in the room at all: the homeserver says,
			// since groups may not have seen a join that just happened.
			if !checkedMember {
				checkedMember = true
				if err := s.mustBeJoined(ctx, a, room); err != nil {
					return "", err
				}
			}
		case errors.Is(err, groups.ErrNoDevice):
			return "", mxErr(http.StatusForbidden, errForbidden, "this device has no MLS identity").with(err)
		case errors.Is(err, groups.ErrNotPuppet):
			return "", mxErr(http.StatusForbidden, errForbidden, "not a puppet of this service").with(err)
		case errors.As(err, &refused):
			return "", err
		case errors.Is(err, inbound.ErrInvalid):
			// groups' own checks of the event type and content.
			return "", mxErr(http.StatusBadRequest, errBadJSON, "%v", err)
		default:
			return "", err
		}
		left := deadline.Sub(s.cfg.Now())
		if left <= 0 {
			if err != nil {
				return "", mxErr(http.StatusServiceUnavailable, errUnknown,
					"this device is not in the room's MLS group yet (csapi.send_wait passed); retry with the same transaction id").with(err)
			}
			return "", mxErr(http.StatusGatewayTimeout, errUnknown,
				"the event is queued but the homeserver has not taken it yet; retry with the same transaction id")
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-woken:
		case <-time.After(min(left, 500*time.Millisecond)):
		}
	}
}

// outboxRefusal returns the homeserver's reason when it refused the
// outbox row txn for good ("" while it is pending or sent).
func (s *Server) outboxRefusal(ctx context.Context, txn string) (string, error) {
	reason, err := database.OutgoingRefusal(ctx, s.cfg.DB, txn)
	if err != nil || reason == "" {
		return "", err
	}
	// The sender's error names the request; the homeserver's part is
	// what the bot can act on.
	if i := strings.Index(reason, ": M_"); i >= 0 {
		reason = reason[i+2:]
	}
	return reason, nil
}

// mustBeJoined answers 403 M_FORBIDDEN, as the homeserver would, when
// the puppet is not joined to room, so that a send there fails at once
// instead of waiting csapi.send_wait for a group the device never enters.
func (s *Server) mustBeJoined(ctx context.Context, a *access, room id.RoomID) error {
	path := "/_matrix/client/v3/rooms/" + url.PathEscape(string(room)) + "/state/m.room.member/" + url.PathEscape(string(a.UserID))
	ans, err := s.call(ctx, a, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	var member struct {
		Membership string `json:"membership"`
	}
	if ans.status == http.StatusOK && json.Unmarshal(ans.body, &member) == nil && member.Membership == "join" {
		return nil
	}
	if ans.status >= 500 {
		// The homeserver is in trouble: wait for the group as before.
		return nil
	}
	return mxErr(http.StatusForbidden, errForbidden, "%s is not joined to %s", a.UserID, room)
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// isDMLS reports whether room is a DMLS room: groups knows it, or its
// create event (which never changes) names a DMLS algorithm. The second
// covers a room that groups has not seen the create event of yet (the
// puppet just joined): a bot's plaintext must never reach a DMLS room.
func (s *Server) isDMLS(ctx context.Context, a *access, room id.RoomID) (bool, error) {
	_, dmls, err := s.cfg.Groups.MembershipIn(ctx, room, a.UserID)
	if err != nil {
		return false, err
	}
	if dmls {
		return true, nil
	}
	if v, ok := s.creates.get(room); ok {
		return v, nil
	}
	ans, err := s.call(ctx, a, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(string(room))+"/state/m.room.create/", nil, nil)
	if err != nil {
		return false, err
	}
	if ans.status != http.StatusOK {
		// Not in the room (or no such room): the homeserver refuses the
		// send itself, and sees nothing but the refusal.
		return false, nil
	}
	var create struct {
		Encryption struct {
			Algorithm string `json:"algorithm"`
		} `json:"encryption"`
	}
	if err := json.Unmarshal(ans.body, &create); err != nil {
		s.cfg.Metrics.Malformed.WithLabelValues("homeserver").Inc()
		return false, errMalformed("m.room.create")
	}
	v := strings.HasPrefix(create.Encryption.Algorithm, dmlsPrefix)
	s.creates.put(room, v)
	return v, nil
}

// createCache remembers which rooms' create events name DMLS, bounded:
// when full it is emptied (a miss costs one homeserver request).
type createCache struct {
	mu    sync.Mutex
	limit int
	m     map[id.RoomID]bool
}

func newCreateCache(limit int) *createCache {
	return &createCache{limit: limit, m: map[id.RoomID]bool{}}
}

func (c *createCache) get(room id.RoomID) (bool, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[room]
	return v, ok
}

func (c *createCache) put(room id.RoomID, v bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.limit {
		clear(c.m)
	}
	c.m[room] = v
}
