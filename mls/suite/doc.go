// Package suite implements the seven MLS cipher suites of RFC 9420 §17.1 and
// the labelled cryptographic helpers built on them (§5.1, §5.2, §8, §9):
// ExpandWithLabel, DeriveSecret, DeriveTreeSecret, RefHash, SignWithLabel,
// VerifyWithLabel, EncryptWithLabel and DecryptWithLabel.
//
// # Keys
//
// Keys are parsed once into four types, each bound to its suite:
//
//   - SignaturePrivateKey: signs (SignWithLabel); made by
//     Suite.GenerateSignatureKey or parsed by Suite.NewSignaturePrivateKey.
//   - SignaturePublicKey: verifies (VerifyWithLabel); the public half of a
//     SignaturePrivateKey, or parsed by Suite.NewSignaturePublicKey.
//   - HPKEPrivateKey: opens (DecryptWithLabel, ExportReceiver); made by
//     Suite.GenerateHPKEKey, derived from a secret by Suite.DeriveHPKEKey
//     or parsed by Suite.NewHPKEPrivateKey.
//   - HPKEPublicKey: seals (EncryptWithLabel, ExportSender); the public
//     half of an HPKEPrivateKey, or parsed by Suite.NewHPKEPublicKey.
//
// A private key holds its public key, computed once, when first needed (a
// service loads thousands of keys for each one it uses), so that signing
// and opening do not derive it again, and the types keep a
// signature key from being used where an HPKE key is expected. Keys are
// immutable and safe for concurrent use.
//
// Signing is deterministic in every suite: Ed25519 and Ed448 are by
// definition, and ECDSA signs as RFC 6979 says. A KeyPackage whose keys
// are derived from a secret can then be derived again, byte for byte,
// when the Welcome that names its KeyPackageRef arrives.
//
// Storage and the wire keep bytes, in the encodings of the RFC and the test
// vectors: HPKE SerializePrivateKey/SerializePublicKey, raw Ed25519/Ed448
// keys, big-endian ECDSA scalars and uncompressed points. Bytes returns
// them and the New functions parse them. Keys that arrive in a message and
// serve once (a LeafNode's signature key) can be checked with
// Suite.VerifyWithLabel, which parses and verifies in one step.
//
// A seal can be taken in two steps: HPKEPublicKey.Encapsulate does the
// KEM's Encap, nearly all of the cost, before the context is known, and
// Encapsulation.EncryptWithLabel finishes it (for X25519; the other KEMs
// seal whole in the second step). HMAC and HKDF reuse pooled hash states
// (kdf.go), since a commit calls them a few dozen times.
//
// Ed25519 signatures are verified on filippo.io/edwards25519 with the
// cofactored equation of RFC 8032 §5.1.7, singly or many at once
// (Suite.VerifyBatch); ed25519.go says why and where that differs from
// crypto/ed25519.
//
// X25519 (suites 1 and 3) is x25519.go's: public keys by edwards25519's
// fixed-base multiplication, Diffie-Hellman by the Montgomery ladder of
// RFC 7748 §5, whose step is assembly in four 64-bit limbs on amd64 CPUs
// with BMI2 and ADX (ladder_amd64.s, checked against the generic ladder
// and math/big), elsewhere edwards25519/field's arithmetic. A batch of
// Encaps (EncapsulateAll, a commit's seals) or of decryptions
// (DecryptAllWithLabel, a commit processed for many members of ours) runs
// its ladders eight at a time on CPUs with AVX-512 IFMA, one a 64-bit
// lane (ladder8.go), a third of a ladder's time each. Both are chosen
// from golang.org/x/sys/cpu's flags, which GODEBUG=cpu.avx512ifma=off
// (the eight-lane ladder) or cpu.adx=off (the other) clear at start; the
// purego build tag leaves both out.
//
// Every signature that does not verify yields an error wrapping
// ErrBadSignature, the one sentinel for it in the MLS packages; every
// ciphertext that does not open, one wrapping ErrDecrypt.
//
// Suites 1, 2, 3, 5 and 7 use only the Go standard library; suites 4 and 6
// take X448 and Ed448 from github.com/cloudflare/circl, which the standard
// library lacks.
//
// A Suite is immutable and safe for concurrent use.
package suite
