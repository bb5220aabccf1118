package appservice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
)

// Sender sends the outbox's events in order, each with the transaction
// id it was given when enqueued (DESIGN 3.4). A crash between the
// homeserver accepting an event and MarkSent re-sends it with the same
// id, and the homeserver answers with the event it already made.
// Synapse remembers an appservice's transaction ids in memory for about
// half an hour, so the guarantee holds across our restarts, not across
// a homeserver restart.
type Sender struct {
	db      *database.DB
	puppets *Puppets
	metrics *Metrics
	log     zerolog.Logger
	wake    chan struct{}
	poll    time.Duration
}

// NewSender returns a sender that acts through puppets.
func NewSender(db *database.DB, puppets *Puppets, metrics *Metrics, log zerolog.Logger) *Sender {
	return &Sender{db: db, puppets: puppets, metrics: metrics, log: log, wake: make(chan struct{}, 1), poll: 2 * time.Second}
}

// Wake tells the sender that an event was enqueued. It never blocks.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run sends until ctx is done. A transient failure holds back the events
// after it (a room's order matters more than latency) and is retried with
// growing delays; a permanent one is recorded and skipped.
func (s *Sender) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	for {
		did, err := s.SendNext(ctx)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err != nil:
			backoff = min(max(2*backoff, time.Second), 5*time.Minute)
			s.log.Error().Err(err).Dur("retry_in", backoff).Msg("Sending outgoing event failed")
		case did:
			backoff = 0
			continue
		default:
			backoff = s.poll
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// SendNext sends the oldest pending event, if any, and reports whether
// there was one.
func (s *Sender) SendNext(ctx context.Context) (bool, error) {
	ev, err := s.db.NextOutgoing(ctx)
	if err != nil || ev == nil {
		return false, err
	}
	log := s.log.With().Str("outbox_txn_id", ev.TxnID).Str("room_id", ev.RoomID).Str("event_type", ev.EventType).Logger()
	eventID, err := s.Send(ctx, ev)
	if err != nil {
		permanent := isPermanent(err)
		s.metrics.OutboxFailures.Inc()
		if merr := s.db.MarkSendFailed(context.WithoutCancel(ctx), ev.Seq, err.Error(), permanent); merr != nil {
			log.Error().Err(merr).Msg("Recording send failure failed")
		}
		if permanent {
			log.Error().Err(err).Msg("Homeserver refused outgoing event; giving up on it")
			return true, nil
		}
		return true, err
	}
	if err := s.db.MarkSent(ctx, ev.Seq, eventID.String()); err != nil {
		return true, err
	}
	s.metrics.OutboxSent.Inc()
	log.Debug().Stringer("event_id", eventID).Msg("Outgoing event sent")
	return true, nil
}

// Send sends one outbox event as its puppet device with its stable
// transaction id. It does not touch the outbox row.
func (s *Sender) Send(ctx context.Context, ev *database.OutgoingEvent) (id.EventID, error) {
	cli, err := s.puppets.Client(id.UserID(ev.UserID), id.DeviceID(ev.DeviceID))
	if err != nil {
		return "", err
	}
	if !json.Valid(ev.Content) {
		return "", fmt.Errorf("send %s: %w", ev.TxnID, errBadContent)
	}
	resp, err := cli.SendMessageEvent(ctx, id.RoomID(ev.RoomID),
		event.Type{Type: ev.EventType, Class: event.MessageEventType}, json.RawMessage(ev.Content),
		mautrix.ReqSendEvent{TransactionID: ev.TxnID})
	if err != nil {
		return "", fmt.Errorf("send %s to %s as %s/%s: %w", ev.TxnID, ev.RoomID, ev.UserID, ev.DeviceID, err)
	}
	return resp.EventID, nil
}

var errBadContent = errors.New("stored content is not JSON")

// isPermanent reports whether retrying cannot help: the homeserver
// refused the request itself (4xx other than rate limiting and
// timeouts), or the stored content is broken.
func isPermanent(err error) bool {
	if errors.Is(err, errBadContent) {
		return true
	}
	var herr mautrix.HTTPError
	if errors.As(err, &herr) && herr.Response != nil {
		code := herr.Response.StatusCode
		return code >= 400 && code < 500 && code != 429 && code != 408
	}
	return false
}
