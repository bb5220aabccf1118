package database

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// OutgoingKind is what an outbox row asks the homeserver to do.
type OutgoingKind string

const (
	// RoomEvent sends a message event into a room as a puppet device.
	RoomEvent OutgoingKind = "room_event"
	// ToDevice sends a to-device message to one device.
	ToDevice OutgoingKind = "to_device"
	// KeyUpload uploads keys (POST /keys/upload) as a puppet device.
	KeyUpload OutgoingKind = "key_upload"
	// MediaUpload uploads Content, the ciphertext of an encrypted
	// attachment, to the media repository as a puppet device. Its result
	// is the content URI, which rows waiting for it can take into their
	// content (ciphertext_file.url).
	MediaUpload OutgoingKind = "media_upload"
)

// Dependency is an earlier outbox row that a row waits for.
type Dependency struct {
	// Seq is the earlier row (AddOutgoing's sequence number).
	Seq int64
	// FillField, if set, is the field of the waiting row's content that
	// gets Seq's result when the waiting row is sent: a top-level member
	// ("commit_event") or a dotted path into nested objects
	// ("ciphertext_file.url"); see FillPath.
	FillField string
	// Result is Seq's result once it was sent (filled when the waiting
	// row is read): the event id of a room event, the content URI of a
	// media upload, empty for kinds that make neither.
	Result string
}

// OutgoingEvent is one outbox row.
type OutgoingEvent struct {
	Seq   int64
	TxnID string
	Kind  OutgoingKind
	// UserID and DeviceID are the puppet device that acts.
	UserID   string
	DeviceID string
	// RoomID and EventType for a room event; EventType, ToUserID and
	// ToDeviceID for a to-device message, and RoomID if it belongs to a
	// room (a Welcome; see Queue).
	RoomID     string
	EventType  string
	ToUserID   string
	ToDeviceID string
	// AlsoTo, for a to-device message, lists further recipients by user
	// (device ids): the same content goes to every one of them in the
	// same request.
	AlsoTo map[string][]string
	// Content is the JSON content or request body; for a media upload,
	// the bytes to upload.
	Content []byte
	// After, if not zero, is an earlier row that must be sent first. If
	// FillField is set, that field of the content (see Dependency) gets
	// After's result when this row is sent: a Welcome names its commit's
	// event id. AlsoAfter lists further rows to wait for, each with its
	// own field: an offloaded Welcome also waits for its upload and takes
	// its content URI. A row given up on gives up every row waiting for it.
	// Read back, the first dependency is After and the others AlsoAfter.
	After     int64
	FillField string
	AlsoAfter []Dependency
	// Hook names who wants to learn the event id when the row is sent,
	// with HookRef as their reference (an epoch waiting for its
	// commit_event); see matrix.SentHook.
	Hook    string
	HookRef []byte
	// Filled when a row is read for sending; AlsoAfter's Results too.
	Attempts     int
	AfterResult  string // After's result once it was sent (see Dependency.Result)
	AfterFailed  bool   // a row it waits for was given up on
	AfterPending bool   // a row it waits for is still to be sent
	// BadRecipients: the row's stored further recipients do not decode.
	BadRecipients bool
}

// Dependencies returns every row ev waits for, After first, with the
// results known when ev was read.
func (ev *OutgoingEvent) Dependencies() []Dependency {
	var deps []Dependency
	if ev.After != 0 {
		deps = append(deps, Dependency{Seq: ev.After, FillField: ev.FillField, Result: ev.AfterResult})
	}
	return append(deps, ev.AlsoAfter...)
}

// Queue returns the outbound queue that orders ev: the room for room
// events, the acting device for to-device messages, key uploads and media
// uploads (one queue per device and kind). Media uploads stay off the
// room's queue so that a large upload never holds up the room's other
// events; the event that needs the upload waits for it by dependency.
// A to-device message that belongs to a room queues per acting device
// and room: a Welcome waits for its commit, and on the device's one queue
// it held up the Welcomes of every other room (and only one outbox worker
// could send a device's Welcomes, at the homeserver's pace for one
// request at a time).
func (ev *OutgoingEvent) Queue() string {
	switch ev.Kind {
	case RoomEvent:
		return "out:room:" + ev.RoomID
	case ToDevice:
		if ev.RoomID != "" {
			return "out:to_device:" + ev.UserID + "|" + ev.DeviceID + "|" + ev.RoomID
		}
		return "out:to_device:" + ev.UserID + "|" + ev.DeviceID
	case MediaUpload:
		return "out:media:" + ev.UserID + "|" + ev.DeviceID
	default:
		return "out:keys:" + ev.UserID + "|" + ev.DeviceID
	}
}

// NewTxnID returns a fresh transaction id for an outgoing request: 96
// random bits in 16 characters of unpadded base64url. It is random rather
// than derived from seq because Synapse keys an appservice's transaction
// ids by path and appservice only, not by user, and seq restarts on a new
// database. It is short because each device's rows repeat it (the
// KeyPackage tables name the upload that carried them, with an index):
// ids made before were "mlsas." and 24 hex digits, 14 bytes more each.
func NewTxnID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("transaction id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// AddOutgoing adds ev to the outbox inside the producer's transaction and
// returns its sequence number and transaction id. The transaction id is
// fixed now: a retry after a crash re-sends with the same id, which the
// homeserver deduplicates. (Media uploads have no transaction id in the
// API: one repeated after a crash stores the bytes twice, and the first
// copy is never referenced.)
func (p *Producer) AddOutgoing(ctx context.Context, ev OutgoingEvent) (int64, string, error) {
	if ev.Kind == "" {
		ev.Kind = RoomEvent
	}
	if ev.Kind == MediaUpload && ev.Content == nil {
		ev.Content = []byte{} // an empty payload, not a missing one
	}
	deps, err := ev.checkDependencies()
	if err != nil {
		return 0, "", fmt.Errorf("enqueue %s: %w", ev.Kind, err)
	}
	var alsoTo []byte
	if len(ev.AlsoTo) > 0 {
		if ev.Kind != ToDevice {
			return 0, "", fmt.Errorf("enqueue %s: further recipients for a row that is not a to-device message", ev.Kind)
		}
		if alsoTo, err = json.Marshal(ev.AlsoTo); err != nil {
			return 0, "", fmt.Errorf("enqueue %s: %w", ev.Kind, err)
		}
	}
	txnID, err := NewTxnID()
	if err != nil {
		return 0, "", err
	}
	queue := ev.Queue()
	var seq int64
	err = p.q.QueryRow(ctx, `INSERT INTO outbox (txn_id, kind, queue, user_id, device_id, room_id, event_type,
		to_user_id, to_device_id, also_to, content, hook, hook_ref)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING seq`,
		txnID, string(ev.Kind), queue, ev.UserID, ev.DeviceID, nullable(ev.RoomID), nullable(ev.EventType),
		nullable(ev.ToUserID), nullable(ev.ToDeviceID), alsoTo, ev.Content, nullable(ev.Hook), ev.HookRef).Scan(&seq)
	if err != nil {
		return 0, "", fmt.Errorf("enqueue %s %s on %s: %w", ev.Kind, txnID, queue, err)
	}
	for pos, d := range deps {
		_, err := p.q.Exec(ctx, `INSERT INTO outbox_dependency (seq, pos, after_seq, fill_field) VALUES ($1, $2, $3, $4)`,
			seq, pos, d.Seq, nullable(d.FillField))
		if err != nil {
			return 0, "", fmt.Errorf("enqueue %s %s: dependency on row %d: %w", ev.Kind, txnID, d.Seq, err)
		}
	}
	p.change(queue, Outbound).delta++
	return seq, txnID, nil
}

// checkDependencies returns ev's dependencies after checking them.
func (ev *OutgoingEvent) checkDependencies() ([]Dependency, error) {
	if ev.After == 0 && ev.FillField != "" {
		return nil, fmt.Errorf("FillField %q without After", ev.FillField)
	}
	deps := ev.Dependencies()
	for _, d := range deps {
		if d.Seq <= 0 {
			return nil, fmt.Errorf("dependency on row %d: no such row", d.Seq)
		}
		if d.FillField == "" {
			continue
		}
		if ev.Kind == MediaUpload {
			return nil, fmt.Errorf("field %q: a media upload's content is not JSON and has no fields", d.FillField)
		}
		if _, err := FillPath(d.FillField); err != nil {
			return nil, err
		}
	}
	return deps, nil
}

// FillPath splits a dependency's FillField into the member names of its
// path: "ciphertext_file.url" is the member url of the object in member
// ciphertext_file. A member whose own name contains a dot cannot be
// named; none of the fields filled in needs one.
func FillPath(field string) ([]string, error) {
	path := strings.Split(field, ".")
	if len(field) > 255 || len(path) > 16 {
		return nil, fmt.Errorf("fill field %.40q…: longer than 255 bytes or 16 members", field)
	}
	for _, name := range path {
		if name == "" {
			return nil, fmt.Errorf("fill field %q: empty member name", field)
		}
	}
	return path, nil
}

// EnqueueEvent adds one outgoing event in tx and flushes at once; for
// callers that add a single row. Producers adding several use AddOutgoing
// and Flush.
func EnqueueEvent(ctx context.Context, tx pgx.Tx, ev OutgoingEvent) (string, error) {
	p := NewProducer(tx)
	_, txnID, err := p.AddOutgoing(ctx, ev)
	if err != nil {
		return "", err
	}
	return txnID, p.Flush(ctx)
}

// HeadOutgoing returns the first row of queue neither sent nor given up
// on, with the state of the rows it waits for; nil if none. Call it with
// the queue's lock held.
func HeadOutgoing(ctx context.Context, q Querier, queue string) (*OutgoingEvent, error) {
	var ev OutgoingEvent
	var roomID, eventType, toUser, toDevice, hook *string
	var alsoTo []byte
	err := q.QueryRow(ctx, `SELECT seq, txn_id, kind, user_id, device_id, room_id, event_type,
		to_user_id, to_device_id, also_to, content, hook, hook_ref, attempts
		FROM outbox WHERE queue = $1 AND sent_at IS NULL AND failed_at IS NULL ORDER BY seq LIMIT 1`, queue).
		Scan(&ev.Seq, &ev.TxnID, &ev.Kind, &ev.UserID, &ev.DeviceID, &roomID, &eventType, &toUser, &toDevice,
			&alsoTo, &ev.Content, &hook, &ev.HookRef, &ev.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read head of %s: %w", queue, err)
	}
	for _, f := range []struct {
		src *string
		dst *string
	}{{roomID, &ev.RoomID}, {eventType, &ev.EventType}, {toUser, &ev.ToUserID}, {toDevice, &ev.ToDeviceID},
		{hook, &ev.Hook}} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	if alsoTo != nil {
		// Written by AddOutgoing from a map; a row that no longer
		// decodes is the sender's to give up on, not the queue's.
		if err := json.Unmarshal(alsoTo, &ev.AlsoTo); err != nil {
			ev.AlsoTo, ev.BadRecipients = nil, true
		}
	}
	if err := readDependencies(ctx, q, &ev); err != nil {
		return nil, fmt.Errorf("read head of %s: %w", queue, err)
	}
	return &ev, nil
}

// readDependencies fills in the rows ev waits for and their state.
//
// It reads them under a share lock. A worker finishing one of them updates
// its row, then wakes ev's queue; a worker that read the row as pending
// puts ev's queue off (waitForDependency) and commits. Without the lock
// the second could read before the first commits and commit after it,
// its wait overwriting the wake: the row would sit out the safety net.
// With it, a row being finished is read once finished, and a row read as
// pending is finished only after this transaction commits.
func readDependencies(ctx context.Context, q Querier, ev *OutgoingEvent) error {
	rows, err := q.Query(ctx, `SELECT d.pos, d.after_seq, coalesce(d.fill_field, ''),
		coalesce(a.event_id, a.content_uri, ''), a.sent_at IS NOT NULL, a.failed_at IS NOT NULL
		FROM outbox_dependency d JOIN outbox a ON a.seq = d.after_seq WHERE d.seq = $1 ORDER BY d.pos
		FOR SHARE OF a`, ev.Seq)
	if err != nil {
		return fmt.Errorf("dependencies of %s: %w", ev.TxnID, err)
	}
	var pos int
	var d Dependency
	var sent, failed bool
	_, err = pgx.ForEachRow(rows, []any{&pos, &d.Seq, &d.FillField, &d.Result, &sent, &failed}, func() error {
		if pos == 0 {
			ev.After, ev.FillField, ev.AfterResult = d.Seq, d.FillField, d.Result
		} else {
			ev.AlsoAfter = append(ev.AlsoAfter, d)
		}
		ev.AfterFailed = ev.AfterFailed || failed
		ev.AfterPending = ev.AfterPending || (!sent && !failed)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dependencies of %s: %w", ev.TxnID, err)
	}
	return nil
}

// OutgoingSent records the row's result (the event id the homeserver gave
// a room event, the content URI of a media upload, empty for requests
// that make neither), lowers its queue's counter in p, and makes the
// queues of rows waiting for it due at once. An uploaded row's bytes are
// dropped: the media repository holds them now.
func OutgoingSent(ctx context.Context, q Querier, p *Producer, ev *OutgoingEvent, result string) error {
	update := `UPDATE outbox SET sent_at = now(), event_id = $2, attempts = attempts + 1,
		last_error = NULL WHERE seq = $1`
	if ev.Kind == MediaUpload {
		if result == "" {
			return fmt.Errorf("mark upload %s sent: no content URI", ev.TxnID)
		}
		update = `UPDATE outbox SET sent_at = now(), content_uri = $2, content = ''::bytea,
			attempts = attempts + 1, last_error = NULL WHERE seq = $1`
	}
	if _, err := q.Exec(ctx, update, ev.Seq, nullable(result)); err != nil {
		return fmt.Errorf("mark outgoing %s sent: %w", ev.TxnID, err)
	}
	p.finished(ev.Queue(), Outbound, 1, time.Now())
	return wakeDependents(ctx, q, p, ev.Seq)
}

// OutgoingFailed records a failed attempt. A permanent failure gives the
// row up, so that it no longer holds back its queue; rows waiting for it
// are then given up too when their turn comes. A transient one keeps the
// row at the head of its queue until retry.
func OutgoingFailed(ctx context.Context, q Querier, p *Producer, ev *OutgoingEvent, reason string, permanent bool, retry time.Time) error {
	_, err := q.Exec(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = $2,
		failed_at = CASE WHEN $3 THEN now() END WHERE seq = $1`, ev.Seq, errorText(reason), permanent)
	if err != nil {
		return fmt.Errorf("record failure of outgoing %s: %w", ev.TxnID, err)
	}
	if permanent {
		p.finished(ev.Queue(), Outbound, 1, time.Now())
		return wakeDependents(ctx, q, p, ev.Seq)
	}
	p.Touch(ev.Queue(), Outbound, retry)
	return nil
}

func wakeDependents(ctx context.Context, q Querier, p *Producer, seq int64) error {
	rows, err := q.Query(ctx, `SELECT DISTINCT o.queue FROM outbox_dependency d JOIN outbox o ON o.seq = d.seq
		WHERE d.after_seq = $1 AND o.sent_at IS NULL AND o.failed_at IS NULL`, seq)
	if err != nil {
		return fmt.Errorf("find rows waiting for outgoing %d: %w", seq, err)
	}
	queues, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("find rows waiting for outgoing %d: %w", seq, err)
	}
	for _, queue := range queues {
		p.Touch(queue, Outbound, time.Now())
	}
	return nil
}

// OutgoingByTxnID returns a row's result once it was sent ("" before):
// its event id, or a media upload's content URI.
func OutgoingByTxnID(ctx context.Context, q Querier, txnID string) (result string, sent bool, err error) {
	var sentAt *time.Time
	err = q.QueryRow(ctx, `SELECT coalesce(event_id, content_uri, ''), sent_at FROM outbox WHERE txn_id = $1`,
		txnID).Scan(&result, &sentAt)
	if err != nil {
		return "", false, fmt.Errorf("read outgoing %s: %w", txnID, err)
	}
	return result, sentAt != nil, nil
}

// OutgoingRefusal returns the reason a row failed for good ("" while it
// is pending or once it was sent): what the homeserver said when it
// refused it.
func OutgoingRefusal(ctx context.Context, q Querier, txnID string) (string, error) {
	var failed bool
	var reason string
	err := q.QueryRow(ctx, `SELECT failed_at IS NOT NULL, coalesce(last_error, '') FROM outbox WHERE txn_id = $1`,
		txnID).Scan(&failed, &reason)
	if err != nil {
		return "", fmt.Errorf("read outgoing %s: %w", txnID, err)
	}
	if !failed {
		return "", nil
	}
	if reason == "" {
		reason = "no reason given"
	}
	return reason, nil
}
