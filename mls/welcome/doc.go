// Package welcome opens an MLS Welcome message for a KeyPackage we hold
// (RFC 9420 §12.4.3.1): it finds the EncryptedGroupSecrets addressed to our
// KeyPackageRef, decrypts them with the KeyPackage's init key, derives the
// welcome key from the joiner_secret and the PSKs, decrypts and decodes the
// GroupInfo, verifies the GroupInfo's signature and confirmation tag, and
// runs the key schedule for the epoch being joined.
//
// It stops where the ratchet tree begins. The signer's public key lives in
// the tree, which the GroupInfo may itself carry, so the caller supplies it
// through a callback that sees the decrypted (not yet verified) GroupInfo;
// tree validation, finding our own leaf and using the path_secret belong to
// the code that builds the group state from the result.
//
// Each way a Welcome can be refused has its own sentinel error, because the
// callers react differently: a Welcome not meant for us is normal in a
// shared to-device stream, while a bad signature is an attack or a bug.
package welcome
