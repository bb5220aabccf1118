// Package suite implements the seven MLS cipher suites of RFC 9420 §17.1 and
// the labelled cryptographic helpers built on them (§5.1, §5.2, §8, §9):
// ExpandWithLabel, DeriveSecret, DeriveTreeSecret, RefHash, SignWithLabel,
// VerifyWithLabel, EncryptWithLabel and DecryptWithLabel.
//
// Keys cross this package's boundary as byte strings in the encodings the
// RFC and the test vectors use (HPKE SerializePrivateKey/SerializePublicKey,
// raw Ed25519/Ed448 keys, ECDSA scalars and uncompressed points), because
// every caller stores or transmits them. Suites 1, 2, 3, 5 and 7 use only the
// Go standard library; suites 4 and 6 take X448 and Ed448 from
// github.com/cloudflare/circl, which the standard library lacks.
//
// A Suite is immutable and safe for concurrent use.
package suite
