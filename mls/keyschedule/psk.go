package keyschedule

import (
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// PSK is one pre-shared key injected into an epoch (RFC 9420 §8.4).
type PSK struct {
	// ID encodes the PreSharedKeyID that names the key, nonce included;
	// normally a *message.PreSharedKeyID.
	ID codec.Marshaler
	// Secret is the key itself: the external PSK's value, or the
	// resumption_psk of the epoch that a resumption PSK names.
	Secret []byte
}

// PSKSecret chains psks, in the order given, into the psk_secret of
// RFC 9420 §8.4. With no PSKs the result is the all-zero string of
// length KDF.Nh.
func PSKSecret(s *suite.Suite, psks []PSK) ([]byte, error) {
	nh := s.HashSize()
	if len(psks) > 0xffff {
		return nil, fmt.Errorf("psk secret: %w: %d", ErrTooManyPSKs, len(psks))
	}
	zero := make([]byte, nh)
	secret := make([]byte, nh)
	var label codec.Writer
	for i, p := range psks {
		// PSKLabel = struct { PreSharedKeyID id; uint16 index; uint16 count; }
		label = codec.Writer{}
		p.ID.MarshalMLS(&label)
		label.Uint16(uint16(i))
		label.Uint16(uint16(len(psks)))

		extracted := s.Extract(zero, p.Secret)
		input := s.ExpandWithLabel(extracted, "derived psk", label.Bytes(), nh)
		next := s.Extract(input, secret)
		clear(extracted)
		clear(input)
		clear(secret)
		secret = next
	}
	return secret, nil
}
