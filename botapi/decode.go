package botapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// Decoding of requests. Bots are untrusted: every body is decoded
// strictly (unknown fields, wrong types, trailing data and oversize bodies
// are refused, naming the field), and every identifier is checked before
// it reaches groups or the homeserver.

// decodeBody decodes the request body into v. An empty body decodes as
// {} when emptyOK (endpoints whose fields are all optional).
func decodeBody(r *http.Request, maxBytes int64, v any, emptyOK bool) *Error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return apiErr(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "body",
				"the body is larger than %d bytes (botapi.max_body_bytes)", maxBytes)
		}
		return apiErr(http.StatusBadRequest, CodeInvalidJSON, "body", "the body could not be read")
	}
	return decodeJSON(body, v, emptyOK)
}

// decodeJSON is decodeBody's decoder, apart from the reading (for the
// fuzz target).
func decodeJSON(body []byte, v any, emptyOK bool) *Error {
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			body = []byte("{}")
		} else {
			return apiErr(http.StatusBadRequest, CodeInvalidJSON, "body", "the body is empty; it must be a JSON object")
		}
	}
	if !utf8.Valid(body) {
		return apiErr(http.StatusBadRequest, CodeInvalidJSON, "body", "the body is not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apiErr(http.StatusBadRequest, CodeInvalidJSON, "body", "the body has data after its JSON object")
	}
	return nil
}

// jsonError names the field that a decoding error concerns.
func jsonError(err error) *Error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return apiErr(http.StatusBadRequest, CodeInvalidJSON, "body", "the body must be a JSON object, not %s", typeErr.Value)
		}
		return apiErr(http.StatusBadRequest, CodeInvalidField, field, "%s must be %s, not %s", field, jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return apiErr(http.StatusBadRequest, CodeInvalidJSON, "body", "the body is not valid JSON (at byte %d)", syntaxErr.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return apiErr(http.StatusBadRequest, CodeInvalidJSON, "body", "the body ends before its JSON object does")
	}
	// encoding/json reports an unknown field as `json: unknown field "x"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if f, err := strconv.Unquote(name); err == nil && f != "" {
			name = f
		}
		return apiErr(http.StatusBadRequest, CodeUnknownField, name, "unknown field %q", name)
	}
	return apiErr(http.StatusBadRequest, CodeInvalidJSON, "body", "the body could not be decoded: %s", err.Error())
}

func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "map", "struct":
		return "an object"
	case "int", "int64", "int32", "uint64", "uint32", "float64":
		return "a number"
	}
	return "of another type"
}

var (
	// Matrix grammar, restricted to what a bot can sensibly send: no
	// control characters, bounded length.
	userIDPattern = regexp.MustCompile(`^@[a-z0-9._=/+-]+:[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^@[a-z0-9._=/+-]+:\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)
	// Room IDs are opaque: !localpart:server before room version 12,
	// !hash after (MSC4291).
	roomIDPattern   = regexp.MustCompile(`^![\x21-\x7e]+$`)
	deviceIDPattern = regexp.MustCompile(`^[A-Za-z0-9._=-]{1,64}$`)
	namePattern     = regexp.MustCompile(`^[a-z0-9._=-]{1,64}$`)
	eventTypePat    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)
	serverPattern   = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$`)
)

func checkUserID(field, s string) (id.UserID, *Error) {
	if s == "" {
		return "", apiErr(http.StatusBadRequest, CodeMissingField, field, "%s is required", field)
	}
	if len(s) > 255 || !userIDPattern.MatchString(s) {
		return "", badField(field, "%s must be a Matrix user ID like @name:server", field)
	}
	return id.UserID(s), nil
}

func checkRoomID(field, s string) (id.RoomID, *Error) {
	if s == "" {
		return "", apiErr(http.StatusBadRequest, CodeMissingField, field, "%s is required", field)
	}
	if len(s) > 255 || !roomIDPattern.MatchString(s) {
		return "", badField(field, "%s must be a Matrix room ID like !opaque:server or !opaque", field)
	}
	return id.RoomID(s), nil
}

func checkDeviceID(field, s string) (id.DeviceID, *Error) {
	if s == "" {
		return "", apiErr(http.StatusBadRequest, CodeMissingField, field, "%s is required", field)
	}
	if !deviceIDPattern.MatchString(s) {
		return "", badField(field, "%s must be 1 to 64 of A-Z, a-z, 0-9 and ._=-", field)
	}
	return id.DeviceID(s), nil
}

// checkText bounds a free-text field (display names, room names, topics).
func checkText(field, s string, limit int) *Error {
	if len(s) > limit {
		return badField(field, "%s is longer than %d bytes", field, limit)
	}
	for _, r := range s {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return badField(field, "%s contains a control character", field)
		}
	}
	return nil
}

// checkContentURI accepts an mxc:// URI (or empty).
func checkContentURI(field, s string) *Error {
	if s == "" {
		return nil
	}
	server, media, ok := strings.Cut(strings.TrimPrefix(s, "mxc://"), "/")
	if !strings.HasPrefix(s, "mxc://") || !ok || !serverPattern.MatchString(server) || media == "" ||
		len(s) > 255 || strings.ContainsAny(media, "/?#% ") {
		return badField(field, "%s must be an mxc:// URI", field)
	}
	return nil
}

// checkWebhookURL accepts an absolute http(s) URL without credentials or
// fragment.
func checkWebhookURL(field, s string) *Error {
	if s == "" {
		return apiErr(http.StatusBadRequest, CodeMissingField, field, "%s is required", field)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(s) > 2048 {
		return badField(field, "%s must be an absolute http:// or https:// URL", field)
	}
	if u.User != nil || u.Fragment != "" {
		return badField(field, "%s must not contain credentials or a fragment (the signature authenticates deliveries)", field)
	}
	return nil
}

// queryInt reads an optional integer query parameter within [lo, hi].
func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, *Error) {
	vals, ok := r.URL.Query()[name]
	if !ok {
		return def, nil
	}
	if len(vals) != 1 {
		return 0, badField(name, "%s is given more than once", name)
	}
	n, err := strconv.ParseInt(vals[0], 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, badField(name, "%s must be an integer between %d and %d", name, lo, hi)
	}
	return n, nil
}

// checkQuery refuses query parameters other than allowed, so that a
// misspelt one is not silently ignored.
func checkQuery(r *http.Request, allowed ...string) *Error {
	for name := range r.URL.Query() {
		known := false
		for _, a := range allowed {
			known = known || a == name
		}
		if !known {
			return apiErr(http.StatusBadRequest, CodeUnknownField, name, "unknown query parameter %q", name)
		}
	}
	return nil
}

func missing(field string) *Error {
	return apiErr(http.StatusBadRequest, CodeMissingField, field, "%s is required", field)
}
