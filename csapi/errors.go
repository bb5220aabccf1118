package csapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// matrixError is an error answer in the client-server API's format
// ({"errcode", "error"}), with the status it is sent with. cause is what
// went wrong inside, for the log only.
type matrixError struct {
	status  int
	errcode string
	message string
	// retryAfterMs is set for M_LIMIT_EXCEEDED.
	retryAfterMs int64
	cause        error
}

func (e *matrixError) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.status, e.errcode, e.message)
	if e.cause != nil {
		s += ": " + e.cause.Error()
	}
	return s
}

func (e *matrixError) Unwrap() error { return e.cause }

func mxErr(status int, errcode, format string, args ...any) *matrixError {
	return &matrixError{status: status, errcode: errcode, message: fmt.Sprintf(format, args...)}
}

func (e *matrixError) with(cause error) *matrixError {
	e.cause = cause
	return e
}

// Error codes of the client-server API that the façade answers with.
const (
	errMissingToken = "M_MISSING_TOKEN"
	errUnknownToken = "M_UNKNOWN_TOKEN"
	errForbidden    = "M_FORBIDDEN"
	errUnrecognized = "M_UNRECOGNIZED"
	errBadJSON      = "M_BAD_JSON"
	errNotJSON      = "M_NOT_JSON"
	errTooLarge     = "M_TOO_LARGE"
	errInvalidParam = "M_INVALID_PARAM"
	errUnknown      = "M_UNKNOWN"
	errNotFound     = "M_NOT_FOUND"
)

// writeError answers with e.
func writeError(w http.ResponseWriter, e *matrixError) {
	body := map[string]any{"errcode": e.errcode, "error": e.message}
	if e.errcode == errUnknownToken {
		body["soft_logout"] = false
	}
	if e.retryAfterMs > 0 {
		body["retry_after_ms"] = e.retryAfterMs
		w.Header().Set("Retry-After", strconv.FormatInt((e.retryAfterMs+999)/1000, 10))
	}
	writeJSON(w, e.status, body)
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"errcode":"M_UNKNOWN","error":"internal error"}`)
	}
	writeRaw(w, status, body)
}

// writeRaw answers with a JSON body that is already encoded.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
