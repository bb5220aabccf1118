// Package seal protects secrets at rest (DESIGN 8): every secret the
// service stores (signature keys, KeyPackage private keys, cross-signing
// keys, and later group state and stored plaintext) goes through a Sealer
// before it reaches the database, so that a dump of the database reveals
// no key.
//
// # Keys
//
// The operator configures one master Key (encryption.key, 32 random bytes
// in base64, written by mls-appservice -g). A Key is never used directly:
// each Purpose (a kind of secret, named by the package that owns it) gets
// its own key, derived with HKDF-SHA-256, so that a value of one kind is
// never accepted as another. Every Key has a KeyID derived from it, which
// every sealed value carries.
//
// # Format
//
//	sealed = version (1 byte, 1) || key id (8 bytes) || nonce (24 bytes) || ciphertext
//
// The AEAD is XChaCha20-Poly1305 with a fresh random nonce per value:
// 192-bit nonces make random choice safe for any number of values under
// one key. The additional data binds the value to the header, the purpose
// and the row it is stored in (a Binding: table and primary key), so a
// value copied to another row, or to another column of another purpose,
// does not open.
//
// # Rotation
//
// To rotate the master key, an operator puts a new encryption.key in the
// configuration and moves the old one to encryption.old_keys. A Sealer
// seals only under the current key and opens under any of them, choosing
// by the value's key id. `mls-appservice keys reseal` then re-seals every
// stored value under the current key (NeedsReseal tells which); once it
// has run, the old key can be removed from old_keys.
//
// The package is pure: no database, no configuration, no global state.
package seal
