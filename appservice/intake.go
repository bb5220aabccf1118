package appservice

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/inbound"
)

// Intake serves the appservice API that the homeserver calls
// (/_matrix/app/v1/...).
type Intake struct {
	hsToken  []byte
	maxBody  int64
	db       database.Querier
	inFlight *semaphore.Weighted
	stored   func() // wakes the splitter; called after each new transaction
	handoff  *Handoff
	metrics  *Metrics
	log      zerolog.Logger
}

// IntakeConfig holds what Intake needs.
type IntakeConfig struct {
	HSToken      string
	MaxBodyBytes int64
	// MaxInFlightBytes bounds the bytes of bodies being received and
	// stored at once; a request beyond it gets 503 and is retried by the
	// homeserver. Zero means 4 × MaxBodyBytes.
	MaxInFlightBytes int64
	DB               database.Querier
	// Stored, if set, is called after a new transaction is committed.
	Stored func()
	// Handoff, if set, takes each new transaction as parsed, for the
	// splitter of this process.
	Handoff *Handoff
	Metrics *Metrics
	Log     zerolog.Logger
}

// NewIntake returns the handler of the homeserver-facing endpoints.
func NewIntake(cfg IntakeConfig) *Intake {
	stored := cfg.Stored
	if stored == nil {
		stored = func() {}
	}
	inFlight := cfg.MaxInFlightBytes
	if inFlight <= 0 {
		inFlight = 4 * cfg.MaxBodyBytes
	}
	return &Intake{hsToken: []byte(cfg.HSToken), maxBody: cfg.MaxBodyBytes, db: cfg.DB,
		inFlight: semaphore.NewWeighted(max(inFlight, cfg.MaxBodyBytes)), stored: stored, handoff: cfg.Handoff,
		metrics: cfg.Metrics, log: cfg.Log}
}

// Register adds the appservice API routes to mux.
func (in *Intake) Register(mux *http.ServeMux) {
	mux.HandleFunc("PUT /_matrix/app/v1/transactions/{txnId}", in.authorized(in.putTransaction))
	mux.HandleFunc("GET /_matrix/app/v1/users/{userId}", in.authorized(in.getUser))
	mux.HandleFunc("GET /_matrix/app/v1/rooms/{roomAlias}", in.authorized(in.getRoomAlias))
	mux.HandleFunc("POST /_matrix/app/v1/ping", in.authorized(in.ping))
	for _, path := range []string{"/_matrix/app/v1/transactions/{txnId}", "/_matrix/app/v1/users/{userId}",
		"/_matrix/app/v1/rooms/{roomAlias}", "/_matrix/app/v1/ping"} {
		mux.HandleFunc(path, in.authorized(in.wrongMethod))
	}
	mux.HandleFunc("/_matrix/app/", in.authorized(in.unknown))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, errcode, msg string) {
	writeJSON(w, status, map[string]string{"errcode": errcode, "error": msg})
}

// authorized checks the homeserver's token in constant time before
// anything else looks at the request.
func (in *Intake) authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r)
		if !ok {
			in.metrics.TransactionsRejected.WithLabelValues("no_token").Inc()
			in.log.Warn().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Msg("Request without hs_token")
			writeError(w, http.StatusUnauthorized, "M_UNAUTHORIZED", "missing homeserver token")
			return
		}
		if subtle.ConstantTimeCompare([]byte(token), in.hsToken) != 1 {
			in.metrics.TransactionsRejected.WithLabelValues("bad_token").Inc()
			in.log.Warn().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Msg("Request with wrong hs_token")
			writeError(w, http.StatusForbidden, "M_FORBIDDEN", "invalid homeserver token")
			return
		}
		next(w, r)
	}
}

// bearerToken reads the Authorization header, falling back to the
// access_token query parameter that homeservers used before spec v1.4.
func bearerToken(r *http.Request) (string, bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		const prefix = "Bearer "
		if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
			return h[len(prefix):], true
		}
		return "", false
	}
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t, true
	}
	return "", false
}

func (in *Intake) putTransaction(w http.ResponseWriter, r *http.Request) {
	txnID := r.PathValue("txnId")
	if txnID == "" {
		in.metrics.TransactionsRejected.WithLabelValues("bad_txn_id").Inc()
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", "transaction id must not be empty")
		return
	}
	if err := inbound.CheckText("transaction id", txnID, 255); err != nil {
		in.metrics.TransactionsRejected.WithLabelValues("bad_txn_id").Inc()
		in.log.Warn().Err(err).Msg("Transaction id refused")
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
		return
	}
	log := in.log.With().Str("txn_id", txnID).Logger()
	// Bound the memory that bodies in flight take: reserve what this one
	// may need before reading it.
	if r.ContentLength > in.maxBody {
		in.metrics.TransactionsRejected.WithLabelValues("too_large").Inc()
		log.Error().Int64("size", r.ContentLength).Int64("limit", in.maxBody).Msg("Transaction body too large, refused")
		writeError(w, http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "transaction body too large")
		return
	}
	reserve := in.maxBody
	if r.ContentLength >= 0 {
		reserve = max(r.ContentLength, 1)
	}
	if !in.inFlight.TryAcquire(reserve) {
		in.metrics.TransactionsRejected.WithLabelValues("busy").Inc()
		log.Warn().Int64("size", reserve).Msg("Too many transaction bytes in flight; asking the homeserver to retry")
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "M_LIMIT_EXCEEDED", "too many transactions in flight, retry later")
		return
	}
	in.metrics.IntakeBytesInFlight.Add(float64(reserve))
	defer func() {
		in.inFlight.Release(reserve)
		in.metrics.IntakeBytesInFlight.Sub(float64(reserve))
	}()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, min(in.maxBody, reserve)))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			in.metrics.TransactionsRejected.WithLabelValues("too_large").Inc()
			log.Error().Int64("limit", in.maxBody).Msg("Transaction body too large, refused")
			writeError(w, http.StatusRequestEntityTooLarge, "M_TOO_LARGE", "transaction body too large")
			return
		}
		in.metrics.TransactionsRejected.WithLabelValues("read_error").Inc()
		log.Warn().Err(err).Msg("Reading transaction body failed")
		writeError(w, http.StatusBadRequest, "M_BAD_JSON", "could not read body")
		return
	}
	// Parse before storing so that the homeserver learns at once that a
	// body is unusable, instead of us failing on it later.
	txn, err := ParseTransaction(body)
	if err != nil {
		in.metrics.TransactionsRejected.WithLabelValues("malformed").Inc()
		log.Error().Err(err).Int("size", len(body)).Msg("Malformed transaction refused")
		if errors.Is(err, ErrNotJSON) {
			writeError(w, http.StatusBadRequest, "M_NOT_JSON", "body is not valid JSON")
		} else {
			writeError(w, http.StatusBadRequest, "M_BAD_JSON", err.Error())
		}
		return
	}
	seq, inserted, reused, err := database.SaveTransaction(r.Context(), in.db, txnID, body)
	if err != nil {
		in.metrics.TransactionsRejected.WithLabelValues("store_error").Inc()
		log.Error().Err(err).Msg("Storing transaction failed; the homeserver will retry")
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "could not store transaction")
		return
	}
	if inserted {
		in.handoff.put(seq, len(body), txn)
	}
	switch {
	case !inserted:
		in.metrics.TransactionsReceived.WithLabelValues("duplicate").Inc()
		log.Debug().Msg("Repeated transaction acknowledged")
	case reused:
		in.metrics.TransactionsReceived.WithLabelValues("reused_txn_id").Inc()
		log.Warn().Int("events", len(txn.Events)).Msg("Transaction id reused with a different body (homeserver restarted its txnId counter?); stored as a new transaction")
		in.stored()
	default:
		in.metrics.TransactionsReceived.WithLabelValues("stored").Inc()
		log.Debug().Int("events", len(txn.Events)).Int("to_device", len(txn.ToDevice)).
			Int("ephemeral", len(txn.Ephemeral)).Msg("Transaction stored")
		in.stored()
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (in *Intake) getUser(w http.ResponseWriter, r *http.Request) {
	userID := r.PathValue("userId")
	if err := inbound.CheckID("user id", userID, '@'); err != nil {
		writeError(w, http.StatusBadRequest, "M_INVALID_PARAM", err.Error())
		return
	}
	ok, err := database.IsPuppet(r.Context(), in.db, userID)
	if err != nil {
		in.log.Error().Err(err).Str("user_id", userID).Msg("User query failed")
		writeError(w, http.StatusInternalServerError, "M_UNKNOWN", "lookup failed")
		return
	}
	if !ok {
		// Puppets are created by the service itself, never on demand.
		writeError(w, http.StatusNotFound, "M_NOT_FOUND", "no such user")
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (in *Intake) getRoomAlias(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "M_NOT_FOUND", "this appservice provides no room aliases")
}

func (in *Intake) ping(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TransactionID string `json:"transaction_id"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "M_NOT_JSON", "body is not valid JSON")
		return
	}
	in.log.Debug().Str("ping_txn_id", req.TransactionID).Msg("Homeserver ping")
	writeJSON(w, http.StatusOK, struct{}{})
}

func (in *Intake) wrongMethod(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusMethodNotAllowed, "M_UNRECOGNIZED", "method not allowed")
}

func (in *Intake) unknown(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "M_UNRECOGNIZED", "unrecognized request")
}
