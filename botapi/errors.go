package botapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"maunium.net/go/mautrix"

	"github.com/mls-appservice/mls-appservice/bots"
	"github.com/mls-appservice/mls-appservice/groups"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// Error is the body of every error answer: a stable machine code, a
// message for humans, and the request field at fault when there is one.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	// HomeserverCode is the homeserver's errcode when it refused what the
	// bot asked (code homeserver_refused).
	HomeserverCode string `json:"homeserver_errcode,omitempty"`
	// RetryAfter, in seconds, for rate_limited answers (also in the
	// Retry-After header).
	RetryAfter int `json:"retry_after,omitempty"`
	// cause is what went wrong inside, for the log only.
	cause error
}

func (e *Error) Error() string {
	s := e.Code + ": " + e.Message
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.cause }

// Stable error codes. Bots branch on these; messages may change.
const (
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeRateLimited      = "rate_limited"
	CodeTooManyStreams   = "too_many_streams"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeInvalidJSON      = "invalid_json"
	CodeUnknownField     = "unknown_field"
	CodeMissingField     = "missing_field"
	CodeInvalidField     = "invalid_field"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnknownPuppet    = "unknown_puppet"
	CodeUnknownRoom      = "unknown_room"
	CodeNotInRoom        = "not_in_room"
	CodeNotInGroup       = "not_in_group"
	CodeNoDevice         = "no_device"
	CodeUnknownDevice    = "unknown_device"
	CodeIdempotencyReuse = "idempotency_key_reused"
	CodeNoWebhook        = "no_webhook"
	CodeHomeserver       = "homeserver_refused"
	CodeHomeserverDown   = "homeserver_unavailable"
	CodeTimeout          = "timeout"
	CodeInternal         = "internal"
)

func apiErr(status int, code, field, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

func badField(field, format string, args ...any) *Error {
	return apiErr(http.StatusBadRequest, CodeInvalidField, field, format, args...)
}

// classify turns an error from the registry, groups or the homeserver
// into an answer. field names the request field that the error concerns
// (the room for ErrNotDMLS, say); nothing a client sent yields a 500.
func classify(err error, field string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	wrap := func(status int, code, f, msg string) *Error {
		return &Error{Status: status, Code: code, Field: f, Message: msg, cause: err}
	}
	var httpErr mautrix.HTTPError
	switch {
	case errors.Is(err, bots.ErrOtherBot):
		return wrap(http.StatusForbidden, CodeForbidden, fieldOr(field, "puppet"), "the puppet belongs to another bot")
	case errors.Is(err, bots.ErrNoPuppet):
		return wrap(http.StatusNotFound, CodeUnknownPuppet, fieldOr(field, "puppet"), "this bot has no such puppet")
	case errors.Is(err, groups.ErrNotDMLS):
		return wrap(http.StatusNotFound, CodeUnknownRoom, fieldOr(field, "room_id"), "not a DMLS room of this service")
	case errors.Is(err, groups.ErrNotInGroup):
		return wrap(http.StatusConflict, CodeNotInGroup, fieldOr(field, "room_id"),
			"the puppet has no device in the room's MLS group (not joined, or its Welcome has not arrived yet: retry later)")
	case errors.Is(err, groups.ErrNoDevice):
		return wrap(http.StatusConflict, CodeNoDevice, fieldOr(field, "device"), "the puppet has no such device with an MLS identity")
	case errors.Is(err, groups.ErrNotPuppet):
		return wrap(http.StatusNotFound, CodeUnknownPuppet, fieldOr(field, "puppet"), "not a puppet of this service")
	case errors.Is(err, inbound.ErrInvalid):
		if strings.Contains(err.Error(), "idempotency key") {
			return wrap(http.StatusUnprocessableEntity, CodeIdempotencyReuse, "Idempotency-Key",
				"this Idempotency-Key was used for another room or puppet")
		}
		return wrap(http.StatusBadRequest, CodeInvalidField, fieldOr(field, "content"), "the request is not valid: "+err.Error())
	case errors.As(err, &httpErr) && httpErr.Response != nil:
		status := httpErr.Response.StatusCode
		msg, errcode := "the homeserver refused the request", ""
		if httpErr.RespError != nil {
			errcode = httpErr.RespError.ErrCode
			if httpErr.RespError.Err != "" {
				msg += ": " + httpErr.RespError.Err
			}
		}
		if status >= 500 {
			e := wrap(http.StatusBadGateway, CodeHomeserverDown, "", "the homeserver failed; retry later")
			e.HomeserverCode = errcode
			return e
		}
		if status < 400 {
			status = http.StatusBadGateway
		}
		e := wrap(status, CodeHomeserver, field, msg)
		e.HomeserverCode = errcode
		return e
	case errors.Is(err, context.DeadlineExceeded):
		return wrap(http.StatusGatewayTimeout, CodeTimeout, "", "the request took too long; it may still take effect "+
			"(a message sent again with the same Idempotency-Key is not sent twice; check other requests' effect before retrying)")
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return wrap(http.StatusBadGateway, CodeHomeserverDown, "", "the homeserver could not be reached; retry later")
	}
	return wrap(http.StatusInternalServerError, CodeInternal, "", "internal error")
}

func fieldOr(field, def string) string {
	if field != "" {
		return field
	}
	return def
}

// writeError answers with e as JSON.
func writeError(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(e.RetryAfter))
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mls-appservice"`)
	}
	writeJSON(w, e.Status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"code":"internal","message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
