package matrix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"

	"github.com/mls-appservice/mls-appservice/database"
	"github.com/mls-appservice/mls-appservice/matrix/attachment"
)

// Media offload (DESIGN 6 "Size"): uploads of encrypted attachments go
// through the outbox (database.MediaUpload, sent by Puppets.upload);
// downloads use authenticated media (GET /_matrix/client/v1/media/download,
// MSC3916) as a puppet, since Synapse no longer serves new media without
// authentication.

// MediaConfig bounds attachment downloads. Zero fields take the defaults.
type MediaConfig struct {
	// MaxDownloadBytes is the largest attachment downloaded (64 MiB).
	MaxDownloadBytes int64
	// DownloadTimeout bounds one attempt, body included (2 minutes).
	DownloadTimeout time.Duration
	// DownloadAttempts is how many times a transient failure (network,
	// timeout, 429, 5xx) is tried in all (4).
	DownloadAttempts int
	// DownloadBackoff is the wait after the first failed attempt; it
	// doubles after each further one, up to 30 s (1 s).
	DownloadBackoff time.Duration
}

func (c MediaConfig) withDefaults() MediaConfig {
	if c.MaxDownloadBytes <= 0 {
		c.MaxDownloadBytes = 64 << 20
	}
	if c.DownloadTimeout <= 0 {
		c.DownloadTimeout = 2 * time.Minute
	}
	if c.DownloadAttempts <= 0 {
		c.DownloadAttempts = 4
	}
	if c.DownloadBackoff <= 0 {
		c.DownloadBackoff = time.Second
	}
	return c
}

// Reasons a download fails, besides attachment.ErrBadFile (the file
// object is malformed) and attachment.ErrHashMismatch (the media
// repository served other bytes than the file object names: tampered).
// DownloadReason names them for logs and metrics.
var (
	ErrMediaNotFound    = errors.New("media not found")
	ErrMediaTooLarge    = errors.New("media larger than the download limit")
	ErrMediaRefused     = errors.New("homeserver refused the download")
	ErrMediaUnavailable = errors.New("media repository unavailable")
)

// DownloadReason names why DownloadAttachment failed, as a metric label:
// "tampered", "bad_file", "not_found", "too_large", "refused",
// "unavailable" or "canceled"; "ok" for nil.
func DownloadReason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, attachment.ErrHashMismatch):
		return "tampered"
	case errors.Is(err, attachment.ErrBadFile):
		return "bad_file"
	case errors.Is(err, ErrMediaNotFound):
		return "not_found"
	case errors.Is(err, ErrMediaTooLarge):
		return "too_large"
	case errors.Is(err, ErrMediaRefused):
		return "refused"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "unavailable"
}

// DownloadAttachment downloads the ciphertext that file names as the
// puppet device (user, device) through authenticated media, checks it
// against the file object's hash and returns the plaintext.
//
// Transient failures are retried with growing delays within the call;
// the rest fail at once: the media does not exist, is larger than the
// limit, the homeserver refuses it, the file object is malformed, or the
// bytes are not the ones the file object names (tampered: another try
// would fetch the same bytes, which the homeserver caches). The error
// matches one of the Err* reasons, attachment.ErrBadFile or
// attachment.ErrHashMismatch; the caller's own retries (a work item's
// attempts) repeat the whole call, and park the item with that reason.
func (p *Puppets) DownloadAttachment(ctx context.Context, user id.UserID, device id.DeviceID, file *attachment.File) ([]byte, error) {
	url := "(no file object)"
	if file != nil {
		url = file.URL
	}
	log := p.log.With().Str("media", url).Str("user_id", user.String()).Str("device_id", device.String()).Logger()
	plaintext, attempts, err := p.download(ctx, user, device, file)
	reason := DownloadReason(err)
	if p.metrics != nil {
		p.metrics.MediaDownloads.WithLabelValues(reason).Inc()
	}
	if err != nil {
		log.Warn().Err(err).Str("reason", reason).Int("attempts", attempts).Msg("Attachment download failed")
		return nil, fmt.Errorf("download attachment %s as %s/%s (%d attempts): %w", url, user, device, attempts, err)
	}
	log.Debug().Int("bytes", len(plaintext)).Int("attempts", attempts).Msg("Attachment downloaded")
	return plaintext, nil
}

func (p *Puppets) download(ctx context.Context, user id.UserID, device id.DeviceID, file *attachment.File) ([]byte, int, error) {
	if file == nil {
		return nil, 0, &attachment.FormatError{Problem: "missing"}
	}
	server, mediaID, err := attachment.ParseContentURI(file.URL)
	if err != nil {
		return nil, 0, err
	}
	cli, err := p.Client(user, device)
	if err != nil {
		return nil, 0, err
	}
	cfg := p.media
	delay := cfg.DownloadBackoff
	for attempt := 1; ; attempt++ {
		ciphertext, err := p.fetch(ctx, cli, server, mediaID)
		if err == nil {
			plaintext, err := file.Decrypt(ciphertext)
			return plaintext, attempt, err
		}
		if ctx.Err() != nil {
			return nil, attempt, fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		if !errors.Is(err, ErrMediaUnavailable) || attempt >= cfg.DownloadAttempts {
			return nil, attempt, err
		}
		p.log.Warn().Err(err).Str("media", file.URL).Int("attempt", attempt).Dur("retry_in", delay).
			Msg("Attachment download failed; will retry")
		select {
		case <-ctx.Done():
			return nil, attempt, fmt.Errorf("%w (%v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// fetch makes one download request and returns the body, or an error
// matching one of the Err* reasons.
func (p *Puppets) fetch(ctx context.Context, cli *mautrix.Client, server, mediaID string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.media.DownloadTimeout)
	defer cancel()
	limit := p.media.MaxDownloadBytes
	_, resp, err := cli.MakeFullRequestWithResp(ctx, mautrix.FullRequest{
		Method:           http.MethodGet,
		URL:              cli.BuildClientURL("v1", "media", "download", server, mediaID),
		DontReadResponse: true,
		MaxAttempts:      1, // retries are ours, by reason
	})
	if err != nil {
		return nil, downloadErr(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: the homeserver announces %d bytes, the limit is %d", ErrMediaTooLarge, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the body: %v", ErrMediaUnavailable, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrMediaTooLarge, limit)
	}
	return body, nil
}

// downloadErr gives a failed download request its reason.
func downloadErr(err error) error {
	var herr mautrix.HTTPError
	if !errors.As(err, &herr) || herr.Response == nil {
		return fmt.Errorf("%w: %v", ErrMediaUnavailable, err)
	}
	code := herr.Response.StatusCode
	switch {
	case code == http.StatusNotFound:
		return fmt.Errorf("%w: %v", ErrMediaNotFound, err)
	case code == http.StatusRequestEntityTooLarge || errors.Is(err, mautrix.MTooLarge):
		return fmt.Errorf("%w: %v", ErrMediaTooLarge, err)
	case code == http.StatusTooManyRequests || code == http.StatusRequestTimeout || code >= 500:
		return fmt.Errorf("%w: %v", ErrMediaUnavailable, err)
	}
	return fmt.Errorf("%w: %v", ErrMediaRefused, err)
}

// upload stores a media upload row's bytes in the media repository as the
// row's puppet device and returns the content URI.
func (p *Puppets) upload(ctx context.Context, cli *mautrix.Client, ev *database.OutgoingEvent) (string, error) {
	// mautrix sends "{}" for a nil body: an empty payload must be an
	// empty, non-nil slice.
	body := ev.Content
	if body == nil {
		body = []byte{}
	}
	resp, err := cli.UploadMedia(ctx, mautrix.ReqUploadMedia{ContentBytes: body, ContentType: "application/octet-stream"})
	if err != nil {
		return "", fmt.Errorf("upload %s (%d bytes) as %s/%s: %w", ev.TxnID, len(body), ev.UserID, ev.DeviceID, err)
	}
	uri := resp.ContentURI.String()
	if _, _, err := attachment.ParseContentURI(uri); err != nil {
		return "", fmt.Errorf("upload %s: %w: content URI %q", ev.TxnID, errBadAnswer, uri)
	}
	return uri, nil
}
