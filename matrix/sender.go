package matrix

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/internal/runloop"
)

// SentHook learns the result of an outbox row, in the database
// transaction that marks the row sent (an epoch's commit_event is written
// back this way, DESIGN 3.4). result is the event id the homeserver gave a
// room event, the content URI of a media upload, and empty for requests
// that make neither.
type SentHook interface {
	Sent(ctx context.Context, q database.Querier, ev *database.OutgoingEvent, result string) error
}

// SenderConfig holds what a Sender needs.
type SenderConfig struct {
	DB      *database.DB
	Puppets *Puppets
	Metrics *Metrics
	Log     zerolog.Logger
	// Workers is the number of queues sent in parallel (at least 1).
	Workers int
	// RequestTimeout bounds one request to the homeserver.
	RequestTimeout time.Duration
	// Hooks by the name an outbox row gives in its Hook field.
	Hooks map[string]SentHook
}

// Sender delivers outbox rows; see the package doc.
type Sender struct {
	cfg   SenderConfig
	loops []*runloop.Loop
}

// NewSender returns a sender over cfg.
func NewSender(cfg SenderConfig) *Sender {
	cfg.Workers = max(cfg.Workers, 1)
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = time.Minute
	}
	s := &Sender{cfg: cfg}
	for range cfg.Workers {
		l := runloop.New(s.SendNext, 2*time.Second, time.Second, time.Minute)
		l.OnError = func(err error, retry time.Duration) {
			s.cfg.Log.Error().Err(err).Dur("retry_in", retry).Msg("Outbox worker failed")
		}
		s.loops = append(s.loops, l)
	}
	return s
}

// Wake tells the workers that rows were added. It never blocks.
func (s *Sender) Wake() {
	for _, l := range s.loops {
		l.Wake()
	}
}

// Run sends until ctx is done.
func (s *Sender) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, l := range s.loops {
		g.Go(func() error { return l.Run(ctx) })
	}
	return g.Wait()
}

// waitForDependency is how long a queue whose head waits for a row of
// another queue sleeps; sending that row makes it due at once, so this
// is only a safety net.
const waitForDependency = 30 * time.Second

// SendNext sends the head row of one due queue, if any, and reports
// whether there was one.
func (s *Sender) SendNext(ctx context.Context) (bool, error) {
	var did bool
	recount := ""
	err := s.cfg.DB.InTx(ctx, func(tx pgx.Tx) error {
		queue, err := database.ClaimQueue(ctx, tx, database.Outbound)
		if err != nil || queue == "" {
			return err
		}
		did = true
		ev, err := database.HeadOutgoing(ctx, tx, queue)
		if err != nil {
			return err
		}
		if ev == nil {
			recount = queue
			return nil
		}
		p := database.NewProducer(tx)
		if err := s.send(ctx, tx, p, ev); err != nil {
			return err
		}
		return p.Flush(ctx)
	})
	if err == nil && recount != "" {
		err = s.cfg.DB.InTx(ctx, func(tx pgx.Tx) error {
			_, err := database.RecountQueue(ctx, tx, recount)
			return err
		})
	}
	return did, err
}

func (s *Sender) send(ctx context.Context, tx pgx.Tx, p *database.Producer, ev *database.OutgoingEvent) error {
	log := s.cfg.Log.With().Str("outbox_txn_id", ev.TxnID).Str("kind", string(ev.Kind)).
		Str("user_id", ev.UserID).Str("device_id", ev.DeviceID).Logger()
	// A row given up on can never be sent, so its dependents are given
	// up at once, even while other rows they wait for are pending.
	switch {
	case ev.AfterFailed:
		log.Error().Int64("after", ev.After).Msg("Outgoing row given up: a row it waits for was given up")
		s.cfg.Metrics.OutboxFailures.WithLabelValues(string(ev.Kind), "true").Inc()
		return database.OutgoingFailed(ctx, tx, p, ev, "a row it waits for was given up", true, time.Time{})
	case ev.AfterPending:
		p.Touch(ev.Queue(), database.Outbound, time.Now().Add(waitForDependency))
		return nil
	}
	start := time.Now()
	reqCtx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	result, err := s.Send(reqCtx, ev)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		permanent := isPermanent(err)
		s.cfg.Metrics.OutboxFailures.WithLabelValues(string(ev.Kind), strconv.FormatBool(permanent)).Inc()
		retry := time.Now().Add(backoff(ev.Attempts))
		if permanent {
			log.Error().Err(err).Msg("Homeserver refused outgoing request; giving up on it")
		} else {
			log.Warn().Err(err).Time("retry_at", retry).Msg("Sending outgoing request failed; will retry")
		}
		return database.OutgoingFailed(ctx, tx, p, ev, err.Error(), permanent, retry)
	}
	s.cfg.Metrics.OutboxSeconds.Observe(time.Since(start).Seconds())
	if err := database.OutgoingSent(ctx, tx, p, ev, result); err != nil {
		return err
	}
	if ev.Hook != "" {
		h := s.cfg.Hooks[ev.Hook]
		if h == nil {
			log.Error().Str("hook", ev.Hook).Msg("Outgoing row names a hook nobody registered; its result is not passed on")
		} else if err := h.Sent(ctx, tx, ev, result); err != nil {
			return fmt.Errorf("hook %s for %s: %w", ev.Hook, ev.TxnID, err)
		}
	}
	s.cfg.Metrics.OutboxSent.WithLabelValues(string(ev.Kind)).Inc()
	log.Debug().Str("result", result).Msg("Outgoing request sent")
	return nil
}

// backoff is the delay after the given number of failed attempts: 1 s
// doubling to at most 5 minutes.
func backoff(attempts int) time.Duration {
	d := time.Second << min(attempts, 9)
	return min(d, 5*time.Minute)
}

// Send makes the request of one outbox row as its puppet device, with its
// fixed transaction id where the API has one, and returns its result: the
// event id of a room event, the content URI of a media upload, "" for the
// other kinds. It does not touch the row.
func (s *Sender) Send(ctx context.Context, ev *database.OutgoingEvent) (string, error) {
	cli, err := s.cfg.Puppets.Client(id.UserID(ev.UserID), id.DeviceID(ev.DeviceID))
	if err != nil {
		return "", err
	}
	if ev.Kind == database.MediaUpload {
		return s.cfg.Puppets.upload(ctx, cli, ev)
	}
	content, err := fill(ev)
	if err != nil {
		return "", err
	}
	switch ev.Kind {
	case database.RoomEvent:
		resp, err := cli.SendMessageEvent(ctx, id.RoomID(ev.RoomID),
			event.Type{Type: ev.EventType, Class: event.MessageEventType}, content,
			mautrix.ReqSendEvent{TransactionID: ev.TxnID})
		if err != nil {
			return "", fmt.Errorf("send %s to %s as %s/%s: %w", ev.TxnID, ev.RoomID, ev.UserID, ev.DeviceID, err)
		}
		return resp.EventID.String(), nil
	case database.ToDevice:
		if ev.BadRecipients {
			return "", fmt.Errorf("send %s: %w: its further recipients do not decode", ev.TxnID, errBadContent)
		}
		messages, n := toDeviceMessages(ev, content)
		url := cli.BuildClientURL("v3", "sendToDevice", ev.EventType, ev.TxnID)
		if _, err := cli.MakeRequest(ctx, http.MethodPut, url, map[string]any{"messages": messages}, nil); err != nil {
			return "", fmt.Errorf("send %s to device %s/%s and %d more as %s/%s: %w", ev.TxnID, ev.ToUserID, ev.ToDeviceID, n-1,
				ev.UserID, ev.DeviceID, err)
		}
		return "", nil
	case database.KeyUpload:
		if _, err := cli.MakeRequest(ctx, http.MethodPost, cli.BuildClientURL("v3", "keys", "upload"), content, nil); err != nil {
			return "", fmt.Errorf("upload keys %s as %s/%s: %w", ev.TxnID, ev.UserID, ev.DeviceID, err)
		}
		return "", nil
	}
	return "", fmt.Errorf("send %s: %w: unknown kind %q", ev.TxnID, errBadContent, ev.Kind)
}

// toDeviceMessages is a /sendToDevice request's messages: content for
// ev's recipient and each of its further ones; n counts the devices.
func toDeviceMessages(ev *database.OutgoingEvent, content json.RawMessage) (messages map[string]map[string]json.RawMessage, n int) {
	messages = map[string]map[string]json.RawMessage{}
	add := func(user, device string) {
		if messages[user] == nil {
			messages[user] = map[string]json.RawMessage{}
		}
		if _, dup := messages[user][device]; !dup {
			messages[user][device] = content
			n++
		}
	}
	add(ev.ToUserID, ev.ToDeviceID)
	for user, devices := range ev.AlsoTo {
		for _, d := range devices {
			add(user, d)
		}
	}
	return messages, n
}

// fill returns the row's content with the result of each row it waited
// for put into that dependency's FillField (an event id, a content URI).
func fill(ev *database.OutgoingEvent) (json.RawMessage, error) {
	if !json.Valid(ev.Content) || !bytes.HasPrefix(bytes.TrimSpace(ev.Content), []byte("{")) {
		return nil, fmt.Errorf("send %s: %w", ev.TxnID, errBadContent)
	}
	content := json.RawMessage(ev.Content)
	for _, d := range ev.Dependencies() {
		if d.FillField == "" {
			continue
		}
		if d.Result == "" {
			return nil, fmt.Errorf("send %s: %w: field %s wants the result of row %d, which made none",
				ev.TxnID, errBadContent, d.FillField, d.Seq)
		}
		path, err := database.FillPath(d.FillField)
		if err != nil {
			return nil, fmt.Errorf("send %s: %w: %v", ev.TxnID, errBadContent, err)
		}
		if content, err = setField(content, path, mustMarshal(d.Result)); err != nil {
			return nil, fmt.Errorf("send %s: %w: field %s: %v", ev.TxnID, errBadContent, d.FillField, err)
		}
	}
	return content, nil
}

// setField returns the JSON object obj with the member at path set to
// value. Missing objects on the way are created; a member on the way that
// is not an object is an error, since overwriting it would lose content.
func setField(obj json.RawMessage, path []string, value json.RawMessage) (json.RawMessage, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(obj, &members); err != nil {
		return nil, errors.New("not inside a JSON object")
	}
	if members == nil { // JSON null: an absent object
		members = map[string]json.RawMessage{}
	}
	if len(path) == 1 {
		members[path[0]] = value
		return mustMarshal(members), nil
	}
	inner, ok := members[path[0]]
	if !ok {
		inner = json.RawMessage("{}")
	}
	inner, err := setField(inner, path[1:], value)
	if err != nil {
		return nil, err
	}
	members[path[0]] = inner
	return mustMarshal(members), nil
}

func mustMarshal(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("matrix: marshal %T: %v", v, err))
	}
	return b
}

var (
	errBadContent = errors.New("stored content is not a JSON object")
	errBadAnswer  = errors.New("the homeserver's answer is malformed")
)

// isPermanent reports whether retrying cannot help: the homeserver
// refused the request itself (4xx other than rate limiting and
// timeouts), the stored content is broken, or the homeserver accepted
// the request but answered nonsense (a retry would repeat the request,
// and a repeated upload stores the bytes again).
func isPermanent(err error) bool {
	if errors.Is(err, errBadContent) || errors.Is(err, errBadAnswer) {
		return true
	}
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && herr.Response != nil {
		code := herr.Response.StatusCode
		return code >= 400 && code < 500 && code != 429 && code != 408
	}
	return false
}
