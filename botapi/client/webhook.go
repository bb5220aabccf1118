package client

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Webhook headers.
const (
	SignatureHeader = "X-MLS-Signature"
	EventIDHeader   = "X-MLS-Event-ID"
)

// DefaultTolerance is how old a webhook delivery may be.
const DefaultTolerance = 5 * time.Minute

// Errors of VerifyWebhook.
var (
	ErrBadSignature = errors.New("webhook: signature does not match")
	ErrTooOld       = errors.New("webhook: timestamp outside the tolerance")
	ErrMalformed    = errors.New("webhook: malformed signature header")
)

// VerifyWebhook checks a delivery: header is the X-MLS-Signature value
// ("t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>"),
// body the raw request body. It refuses a signature that does not match
// (compared in constant time) and a timestamp further than tolerance from
// now, either way (a replay of an old delivery).
func VerifyWebhook(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return ErrMalformed
			}
			sigs = append(sigs, sig)
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	want := mac.Sum(nil)
	ok := false
	for _, sig := range sigs {
		ok = hmac.Equal(sig, want) || ok
	}
	if !ok {
		return ErrBadSignature
	}
	age := now.Sub(time.Unix(t, 0))
	if age > tolerance || age < -tolerance {
		return ErrTooOld
	}
	return nil
}
