package framing

import (
	"crypto/hmac"
	"fmt"

	"github.com/mls-appservice/mls-appservice/mls/codec"
	"github.com/mls-appservice/mls-appservice/mls/message"
	"github.com/mls-appservice/mls-appservice/mls/suite"
)

// ConfirmedTranscriptHash returns the confirmed transcript hash of the
// epoch that the commit in ac creates (§8.2):
//
//	Hash(interim_transcript_hash_before || ConfirmedTranscriptHashInput)
func ConfirmedTranscriptHash(s *suite.Suite, interimBefore []byte, ac *message.AuthenticatedContent) ([]byte, error) {
	if ac.Content.ContentType != message.ContentCommit {
		return nil, fmt.Errorf("framing: transcript hash over content type %d, want commit", ac.Content.ContentType)
	}
	h := s.NewHash()
	h.Write(interimBefore)
	codec.WriteTo(h, ac.ConfirmedTranscriptHashInput()) // a hash's Write never fails
	return h.Sum(nil), nil
}

// InterimTranscriptHash returns Hash(confirmed || InterimTranscriptHashInput),
// the hash the next commit builds on (§8.2).
func InterimTranscriptHash(s *suite.Suite, confirmed, confirmationTag []byte) []byte {
	h := s.NewHash()
	h.Write(confirmed)
	h.Write(codec.Marshal(&message.InterimTranscriptHashInput{ConfirmationTag: confirmationTag}))
	return h.Sum(nil)
}

// ConfirmationTag returns MAC(confirmation_key, confirmed_transcript_hash).
func ConfirmationTag(s *suite.Suite, confirmationKey, confirmedTranscriptHash []byte) []byte {
	return s.MAC(confirmationKey, confirmedTranscriptHash)
}

// VerifyConfirmationTag checks a commit's confirmation tag in constant time.
func VerifyConfirmationTag(s *suite.Suite, confirmationKey, confirmedTranscriptHash, tag []byte) error {
	if !hmac.Equal(ConfirmationTag(s, confirmationKey, confirmedTranscriptHash), tag) {
		return ErrBadConfirmationTag
	}
	return nil
}
