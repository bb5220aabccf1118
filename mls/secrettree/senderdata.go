package secrettree

import "github.com/mls-appservice/mls-appservice/mls/suite"

// SenderDataKey derives the AEAD key and nonce that protect a
// PrivateMessage's sender data (RFC 9420 §6.3.2). They depend on the first
// KDF.Nh bytes of the content ciphertext (all of it if shorter), so that
// every message gets its own key without any state.
func SenderDataKey(s *suite.Suite, senderDataSecret, ciphertext []byte) (key, nonce []byte) {
	sample := ciphertext
	if len(sample) > s.HashSize() {
		sample = sample[:s.HashSize()]
	}
	key = s.ExpandWithLabel(senderDataSecret, "key", sample, s.KeySize())
	nonce = s.ExpandWithLabel(senderDataSecret, "nonce", sample, s.NonceSize())
	return key, nonce
}
