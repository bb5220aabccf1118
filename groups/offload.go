package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/epochs"
	"github.com/mls-appservice/mls-appservice/inbound"
	"github.com/mls-appservice/mls-appservice/keys"
	"github.com/mls-appservice/mls-appservice/matrix"
	"github.com/mls-appservice/mls-appservice/matrix/attachment"
)

// Media offload (DESIGN 6 "Size"). A Matrix event is at most 64 KiB, and a
// Welcome carrying the ratchet tree passes that at about 290 members, a
// commit in a sparse tree at about 500. A commit or Welcome whose event
// would be larger than Config.OffloadThreshold is encrypted as a Matrix
// encrypted attachment (fresh AES-256-CTR key, SHA-256 of the ciphertext),
// uploaded to the media repository through the outbox, and the event
// carries the file object as ciphertext_file instead of ciphertext. The
// event row waits for its upload row and takes its content URI into
// ciphertext_file.url, so nothing names media that is not stored yet.
//
// A receiver downloads through authenticated media as one of our devices,
// checks the hash (matrix.Puppets.DownloadAttachment) and processes the
// payload as if it had been inline. A download that fails for a transient
// reason fails the work item, which the spine retries with backoff and
// parks with its error after its last attempt; one that cannot succeed
// (tampered bytes, a malformed file object, missing or refused media) is
// refused at once with its reason: counted, logged, and dropped, so the
// room goes on.

// Payload kinds that can be offloaded, as metric labels. The service
// publishes no GroupInfo today (no external joins): the kind is named so
// that the metric's label set is stable once it does.
const (
	offloadCommit    = "commit"
	offloadWelcome   = "welcome"
	offloadGroupInfo = "group_info"
)

// offloaded is what an event carries instead of an inline ciphertext.
type offloaded struct {
	file   json.RawMessage // the file object, its url filled in by the outbox
	upload int64           // the outbox row of the upload
}

// offloadIfLarge decides whether the event content inline (its JSON
// encoding, of inlineSize bytes) is too large, and if so adds the upload
// of payload to the outbox as dev and returns the file object to put in
// ciphertext_file. It returns nil when the payload stays inline.
func (s *Service) offloadIfLarge(ctx context.Context, w *inbound.Work, kind string, dev epochs.Device, inlineSize int, payload []byte) (*offloaded, error) {
	if int64(inlineSize) <= s.cfg.OffloadThreshold {
		return nil, nil
	}
	ciphertext, file := attachment.Encrypt(payload)
	seq, _, err := w.Out.AddOutgoing(ctx, database.OutgoingEvent{Kind: database.MediaUpload, UserID: dev.UserID,
		DeviceID: dev.DeviceID, Content: ciphertext})
	if err != nil {
		return nil, fmt.Errorf("offload %s of %d bytes: %w", kind, len(payload), err)
	}
	raw, err := json.Marshal(file)
	if err != nil {
		return nil, fmt.Errorf("offload %s: file object: %w", kind, err)
	}
	w.Count(s.metrics.Offloaded.WithLabelValues(kind), 1)
	s.cfg.Log.Debug().Str("kind", kind).Int("event_bytes", inlineSize).Int("payload_bytes", len(payload)).
		Stringer("device", dev).Msg("Payload offloaded to the media repository")
	return &offloaded{file: raw, upload: seq}, nil
}

// fileURLField is the field of an offloaded event's content that takes its
// upload's content URI.
const fileURLField = "ciphertext_file.url"

// dependOnUpload makes ev wait for its upload too and take its URI.
func dependOnUpload(ev *database.OutgoingEvent, o *offloaded) {
	if ev.After == 0 {
		ev.After, ev.FillField = o.upload, fileURLField
		return
	}
	ev.AlsoAfter = append(ev.AlsoAfter, database.Dependency{Seq: o.upload, FillField: fileURLField})
}

// decodePayload reads an event's payload: exactly one of ciphertext
// (inline, unpadded base64) and ciphertext_file (a file object, checked by
// attachment.Parse) must be present.
func decodePayload(ciphertext string, file json.RawMessage) ([]byte, *attachment.File, error) {
	if file == nil {
		ct, err := decodeCiphertext(ciphertext)
		return ct, nil, err
	}
	if ciphertext != "" {
		return nil, nil, fmt.Errorf("%w: both ciphertext and ciphertext_file", ErrWire)
	}
	f, err := attachment.Parse(file)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ciphertext_file: %w", ErrWire, err)
	}
	return nil, f, nil
}

// offloadRefusal is a download that cannot succeed: the payload is
// dropped with its reason (matrix.DownloadReason).
type offloadRefusal struct {
	kind, reason string
	err          error
}

func (e *offloadRefusal) Error() string {
	return fmt.Sprintf("offloaded %s refused (%s): %v", e.kind, e.reason, e.err)
}

func (e *offloadRefusal) Unwrap() error { return e.err }

// fetchOffloaded downloads and opens an offloaded payload as our device
// as. A failure that a later attempt may cure is returned as is (the
// work item is retried, then parked with it); one that cannot is counted,
// logged with its context and returned as an *offloadRefusal.
func (s *Service) fetchOffloaded(ctx context.Context, kind string, file *attachment.File, as keys.Device, room string, event string) ([]byte, error) {
	payload, err := s.cfg.Puppets.DownloadAttachment(ctx, as.UserID, as.DeviceID, file)
	reason := matrix.DownloadReason(err)
	s.metrics.OffloadDownloads.WithLabelValues(kind, reason).Inc()
	if err == nil {
		return payload, nil
	}
	log := s.cfg.Log.With().Str("kind", kind).Str("room_id", room).Str("event_id", event).Stringer("as", as).
		Str("media", file.URL).Str("reason", reason).Logger()
	switch reason {
	case "unavailable", "canceled":
		log.Warn().Err(err).Msg("Offloaded payload not downloaded yet; the work item will be retried")
		return nil, fmt.Errorf("offloaded %s of %s: %w", kind, event, err)
	}
	log.Warn().Err(err).Msg("Offloaded payload refused")
	return nil, &offloadRefusal{kind: kind, reason: reason, err: err}
}

// downloader is the device of ours that downloads a room's offloaded
// commit: our first device in the room, or the appservice's own user
// when we hold the room's history only (authenticated media asks for a
// user of the homeserver, not a member of the room).
func (s *Service) downloader(r *room) keys.Device {
	if ours := r.ours(); len(ours) > 0 {
		return toKeys(ours[0])
	}
	return keys.Device{UserID: s.cfg.Puppets.BotID()}
}

// fetchCommit fills e.Ciphertext from its media when the commit was
// offloaded. It reports false when the event is to be dropped (refused).
// A commit whose sender is not the device it names is left to
// applyCommit to refuse, without downloading anything.
func (s *Service) fetchCommit(ctx context.Context, r *room, ev eventRef, e *Encrypted) (bool, error) {
	if e.File == nil || e.Ciphertext != nil || e.Commit == nil || string(ev.sender) != e.Commit.Sender.UserID {
		return true, nil
	}
	payload, err := s.fetchOffloaded(ctx, offloadCommit, e.File, s.downloader(r), string(r.id), string(ev.id))
	var refused *offloadRefusal
	if errors.As(err, &refused) {
		s.metrics.CommitsRejected.WithLabelValues("media_" + refused.reason).Inc()
		return false, nil
	}
	if err != nil {
		return false, err
	}
	e.Ciphertext = payload
	return true, nil
}

// eventRef names a room event for logs.
type eventRef struct {
	id     id.EventID
	sender id.UserID
}

// fetchWelcome fills wel.Message from its media when the Welcome was
// offloaded, downloading as the device it is for. It reports false when
// the Welcome is to be dropped (refused).
func (s *Service) fetchWelcome(ctx context.Context, wel *Welcome, dev keys.Device) (bool, error) {
	if wel.File == nil || wel.Message != nil {
		return true, nil
	}
	payload, err := s.fetchOffloaded(ctx, offloadWelcome, wel.File, dev, wel.RoomID, wel.Commit.EventID)
	var refused *offloadRefusal
	if errors.As(err, &refused) {
		s.metrics.WelcomesRefused.WithLabelValues("media_" + refused.reason).Inc()
		return false, nil
	}
	if err != nil {
		return false, err
	}
	wel.Message = payload
	return true, nil
}
