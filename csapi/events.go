package csapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/groups"
)

// Rewriting events. Every m.room.encrypted event of a DMLS room that the
// homeserver gives a bot (in /sync, /messages, /context, /event) is
// replaced by what groups delivered to the bot's puppet for it: the
// decrypted event's type and content, with the encrypted event's id,
// sender and timestamps, and unsigned noting that it came over MLS. The
// façade decrypts nothing itself: groups decrypts each message once for
// all our puppets, when the homeserver pushes it to the appservice, and
// keeps it in each joined puppet's log (groups.Delivery).
//
// The homeserver may give the bot an event before groups has processed
// it (the appservice transaction and the bot's /sync race). Such an
// event holds the whole answer, up to csapi.sync_hold, and if it is still
// not delivered then, it is given as it is, marked undecryptable. Events
// older than groups.wait plus the hold are not waited for: groups has
// decided about them long ago, and one it never delivered to this puppet
// (sent before the puppet joined) will not come.
//
// Commits are MLS protocol, not messages: lists of events (a timeline, a
// page of /messages) leave them out; asked for alone (/event), one is
// given as it is, marked as a commit.

// noteKey is the key in unsigned under which the façade says what it did.
const noteKey = "org.mls-appservice.mls"

// dmlsPrefix starts every DMLS algorithm name (MSC2883).
const dmlsPrefix = "org.matrix.msc2883.v1.dmls."

// lookup is where a rewriter finds what a puppet was given.
type lookup interface {
	// delivery is groups' entry for event in the puppet's log (nil if none).
	delivery(ctx context.Context, event id.EventID) (*groups.Delivered, error)
	// txnID is the transaction id the puppet's device sent event with
	// through the façade ("" if it did not).
	txnID(ctx context.Context, event id.EventID) (string, error)
	// wait is closed at the puppet's next delivery in this process.
	wait() <-chan struct{}
}

// rewriter rewrites the events of one answer for one puppet device.
type rewriter struct {
	puppet  id.UserID
	device  id.DeviceID
	look    lookup
	now     func() time.Time
	hold    time.Duration
	maxAge  time.Duration
	poll    time.Duration
	metrics *Metrics
	log     zerolog.Logger
}

// slot is one DMLS event of an answer, and what becomes of it.
type slot struct {
	obj       map[string]json.RawMessage
	event     id.EventID
	sender    id.UserID
	algorithm string
	commit    bool
	fresh     bool
	d         *groups.Delivered
}

// eventList is a list of events in an answer; single events are lists of
// one that keep commits.
type eventList struct {
	events      []json.RawMessage
	dropCommits bool
	slots       []*slot // per event: nil if it is left as it is
}

// prepare parses an event and returns its slot if it is an encrypted
// DMLS room event (nil otherwise: the event is passed on unchanged).
func (rw *rewriter) prepare(raw json.RawMessage) *slot {
	var head struct {
		Type           string          `json:"type"`
		EventID        id.EventID      `json:"event_id"`
		Sender         id.UserID       `json:"sender"`
		StateKey       *string         `json:"state_key"`
		OriginServerTS int64           `json:"origin_server_ts"`
		Content        json.RawMessage `json:"content"`
		Unsigned       struct {
			Age *int64 `json:"age"`
		} `json:"unsigned"`
	}
	if !bytes.Contains(raw, []byte(groups.EncryptedType)) {
		return nil
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		rw.metrics.Malformed.WithLabelValues("homeserver").Inc()
		return nil
	}
	if head.Type != groups.EncryptedType || head.StateKey != nil || head.EventID == "" {
		return nil
	}
	var content struct {
		Algorithm string          `json:"algorithm"`
		Next      json.RawMessage `json:"dmls_next_epoch"`
	}
	if err := json.Unmarshal(head.Content, &content); err != nil || !strings.HasPrefix(content.Algorithm, dmlsPrefix) {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil
	}
	age := rw.now().UnixMilli() - head.OriginServerTS
	if head.Unsigned.Age != nil {
		age = *head.Unsigned.Age
	}
	return &slot{obj: obj, event: head.EventID, sender: head.Sender, algorithm: content.Algorithm,
		commit: len(content.Next) > 0 && !bytes.Equal(content.Next, []byte("null")),
		fresh:  time.Duration(age)*time.Millisecond < rw.maxAge+rw.hold}
}

// rewrite rewrites lists in place, holding the answer for events not
// delivered yet (one hold for all of them).
func (rw *rewriter) rewrite(ctx context.Context, lists []*eventList) error {
	var pending []*slot
	for _, l := range lists {
		l.slots = make([]*slot, len(l.events))
		for i, raw := range l.events {
			sl := rw.prepare(raw)
			l.slots[i] = sl
			if sl != nil && !sl.commit {
				pending = append(pending, sl)
			}
		}
	}
	if len(pending) > 0 {
		if err := rw.resolve(ctx, pending); err != nil {
			return err
		}
	}
	for _, l := range lists {
		out := l.events[:0:0]
		for i, raw := range l.events {
			sl := l.slots[i]
			if sl == nil {
				out = append(out, raw)
				continue
			}
			if sl.commit && l.dropCommits {
				rw.metrics.Events.WithLabelValues("commit_hidden").Inc()
				continue
			}
			ev, err := rw.render(ctx, sl)
			if err != nil {
				return err
			}
			out = append(out, ev)
		}
		l.events = out
	}
	return nil
}

// resolve looks up each slot's delivery, waiting up to the hold for the
// fresh ones that have none yet.
func (rw *rewriter) resolve(ctx context.Context, slots []*slot) error {
	look := func() ([]*slot, error) {
		var missing []*slot
		for _, sl := range slots {
			if sl.d != nil {
				continue
			}
			d, err := rw.look.delivery(ctx, sl.event)
			if err != nil {
				return nil, err
			}
			if d != nil && (d.Kind == groups.KindMessage || d.Kind == groups.KindUndecryptable) {
				sl.d = d
				continue
			}
			if sl.fresh {
				missing = append(missing, sl)
			}
		}
		return missing, nil
	}
	start := rw.now()
	deadline := start.Add(rw.hold)
	held := false
	for {
		woken := rw.look.wait()
		missing, err := look()
		if err != nil {
			return err
		}
		left := deadline.Sub(rw.now())
		if len(missing) == 0 || left <= 0 {
			break
		}
		held = true
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-woken:
		case <-time.After(min(left, rw.poll)):
		}
	}
	if held {
		rw.metrics.HeldSeconds.Observe(rw.now().Sub(start).Seconds())
	}
	return nil
}

// render returns the event that replaces a slot's.
func (rw *rewriter) render(ctx context.Context, sl *slot) (json.RawMessage, error) {
	unsigned := map[string]json.RawMessage{}
	if raw, ok := sl.obj["unsigned"]; ok {
		if err := json.Unmarshal(raw, &unsigned); err != nil || unsigned == nil {
			unsigned = map[string]json.RawMessage{}
		}
	}
	note := map[string]any{"algorithm": sl.algorithm}
	switch {
	case sl.commit:
		note["commit"] = true
		rw.metrics.Events.WithLabelValues("commit").Inc()
	case sl.d != nil && sl.d.Kind == groups.KindMessage:
		typ, err := json.Marshal(sl.d.Type)
		if err != nil {
			return nil, err
		}
		sl.obj["type"] = typ
		sl.obj["content"] = sl.d.Content
		note["decrypted"] = true
		note["sender_device"] = sl.d.SenderDevice
		// The homeserver's transaction_id is the outbox's; the bot's own
		// is the one it sent through the façade, if it did.
		delete(unsigned, "transaction_id")
		if sl.sender == rw.puppet && sl.d.SenderDevice == rw.device {
			txn, err := rw.look.txnID(ctx, sl.event)
			if err != nil {
				return nil, err
			}
			if txn != "" {
				unsigned["transaction_id"], _ = json.Marshal(txn)
			}
		}
		rw.metrics.Events.WithLabelValues("decrypted").Inc()
	case sl.d != nil:
		var why struct {
			Reason string `json:"reason"`
		}
		_ = json.Unmarshal(sl.d.Content, &why)
		note["undecryptable"] = true
		note["reason"] = why.Reason
		rw.metrics.Events.WithLabelValues("undecryptable").Inc()
	default:
		note["undecryptable"] = true
		note["reason"] = "not_delivered"
		if sl.fresh {
			note["reason"] = "not_decrypted_in_time"
		}
		rw.metrics.Events.WithLabelValues("not_delivered").Inc()
		rw.log.Info().Stringer("puppet", rw.puppet).Stringer("event_id", sl.event).Bool("fresh", sl.fresh).
			Msg("Encrypted event given undecrypted: groups has not delivered it to the puppet")
	}
	var err error
	if unsigned[noteKey], err = json.Marshal(note); err != nil {
		return nil, err
	}
	if sl.obj["unsigned"], err = json.Marshal(unsigned); err != nil {
		return nil, err
	}
	return json.Marshal(sl.obj)
}

// puppetLookup is the lookup of a puppet device in groups and the
// façade's transaction ids.
type puppetLookup struct {
	s *Server
	a *access
}

func (l puppetLookup) delivery(ctx context.Context, event id.EventID) (*groups.Delivered, error) {
	return l.s.cfg.Groups.Delivery(ctx, l.a.UserID, event)
}

func (l puppetLookup) txnID(ctx context.Context, event id.EventID) (string, error) {
	var txn string
	err := l.s.cfg.DB.QueryRow(ctx, `SELECT txn_id FROM csapi_txn WHERE event_id = $1 AND user_id = $2 AND device_id = $3`,
		event, l.a.UserID, l.a.DeviceID).Scan(&txn)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return txn, err
}

func (l puppetLookup) wait() <-chan struct{} { return l.s.cfg.Groups.Wait(l.a.UserID) }

// rewriter returns the rewriter of a's events.
func (s *Server) rewriter(a *access) *rewriter {
	return &rewriter{puppet: a.UserID, device: a.DeviceID, look: puppetLookup{s, a}, now: s.cfg.Now,
		hold: s.cfg.Settings.SyncHold.D(), maxAge: s.cfg.GroupsWait, poll: 250 * time.Millisecond,
		metrics: s.cfg.Metrics, log: s.log}
}
