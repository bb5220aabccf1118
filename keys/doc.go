// Package keys owns each of our devices' MLS identity and KeyPackage
// stock, the puppets' cross-signing keys, and the claiming and checking
// of other devices' KeyPackages (DESIGN 2, 6). Other devices find a
// device's credential and claim its KeyPackages through the homeserver,
// as Olm devices publish identity keys and one-time keys.
//
// # Identity
//
// Each puppet device has a signature key of the configured suite (1, 2
// or 3) and the BasicCredential "<user id>|<device id>". Its device keys
// object lists the DMLS algorithm and publishes the key as
// <prefix>.credential.<ed25519|p256>:<device>, and for the Ed25519 suites
// also as ed25519:<device> (our devices run no Olm, and tools that look
// for an ed25519 key find it), signed with it under each name.
// EnsureIdentity makes it in the caller's transaction, together with a
// full stock and a last-resort KeyPackage and the outbox row that uploads
// all of them, so that the keys and their upload commit together: after a
// crash the outbox re-sends the same body. A device made before this
// package existed, or without EnsureIdentity, gets its identity from the
// sweep timer (scheduled at start-up by Start and every check interval).
//
// # KeyPackages as one-time keys
//
// KeyPackages are uploaded as one-time keys
// "<prefix>.key_package.<suite>:<key id>" whose value is the unpadded
// base64 of an MLSMessage with wire format mls_key_package (RFC 9420 6;
// MSC2883 says only "the encoding specified in MLS", and the envelope
// makes the value self-describing). The key id is the KeyPackageRef in
// URL-safe base64, fixed by the content, so one key id never names two
// KeyPackages. One last-resort KeyPackage (RFC 9420 16.8) is the fallback
// key. Private keys are sealed (package seal) and bound to their row.
//
// # Batches
//
// The one-time KeyPackages of one upload are a batch, stored in one row
// (key_package_batch) rather than one row each, since a device keeps
// keys.stock of them (50) and their rows were nearly all of what a device
// costs in the database. KeyPackage i of a batch is
// group.DeriveKeyPackage(template, F(i), signature key), where F is an
// indexed PPRF (mls/pprf) with a leaf per KeyPackage and template holds
// what they share (credential, capabilities, lifetime); signing is
// deterministic, so deriving again gives the uploaded bytes. The row
// keeps the template (without the credential, which the row's key names:
// template.go), the first 2 bytes of each KeyPackageRef (to find
// the index a Welcome names) and the PPRF, sealed. Using a KeyPackage
// punctures its index: from then on the row holds nothing from which its
// private keys follow, as when a one-time KeyPackage's row was deleted,
// and a second Welcome for it is refused. The PPRF starts as one secret
// and grows by at most log2(stock) secrets per use; the row is deleted
// when every KeyPackage is used. Measured at 10,000 devices, each
// claimed once (load test, pg_total_relation_size after VACUUM FULL): the
// batches take 565 bytes a device with their index, where a device's 50
// rows took 38.7 KB (at 1,000 devices).
//
// The last-resort KeyPackage serves several joiners and is replaced, not
// punctured. The current one is held in the device's own puppet_device
// row (lastresort.go): its template, the first 2 bytes of its ref and,
// sealed, the secret it is derived from; a row of its own cost about 300
// bytes a device more. A replaced one moves to a row of key_package,
// retired, where it is found by its key id until keys.last_resort_grace
// has passed; so are one-time ones made before batches and current ones
// stored before migration 0031 (rows made before migration 0014 hold the
// sealed KeyPackage and private keys).
//
// The device keys object is not stored either: signing is deterministic,
// so the signature key rebuilds it as uploaded when it is uploaded again
// or cross-signed (rows made before migration 0013 keep theirs).
//
// The stock is kept at keys.stock. The homeserver's MSC3202 counts arrive
// only with transactions that concern the device, and may have been
// computed before our latest upload arrived; so a low count only asks for
// the device's check (a timer on the device's queue, which also runs every
// keys.check_interval as a safety net), and the check decides on fresh
// numbers: pending, the KeyPackages whose upload row is not sent yet, and
// held, the homeserver's count now (an empty /keys/upload answers with
// it). When held+pending is below keys.low_water it makes
// stock-held-pending more. Pending is read before held: a row sent in
// between is then counted twice (too few made, made up at the next
// check), never not at all (too many). Repeated low counts of one deficit
// thus lead to one top-up.
//
// When the homeserver reports that the fallback key was handed out (its
// unused fallback key types lack ours), the last-resort KeyPackage is
// replaced; a report that may predate the current one (its upload was
// acknowledged after the report's transaction became a work item) is
// ignored. It is also replaced when a Welcome that used it is processed
// (Consume) and before it expires. A replaced one keeps its private keys
// for keys.last_resort_grace: those who claimed it may still send a
// Welcome. A one-time KeyPackage's private keys are deleted when the
// Welcome that used it is processed (Consume), or after expiry plus the
// same grace, or at once if its upload was given up.
//
// # Cross-signing
//
// Each puppet has a master and a self-signing key; the master key signs
// the self-signing key, which signs each device once its device keys are
// on the homeserver (the outbox hook Sent schedules that). See
// crosssign.go for why keys are stored before they are uploaded. Synapse
// (1.163) asks an appservice user for no interactive authentication on
// /keys/device_signing/upload: the first upload is exempt by MSC3967 and
// a replacement by the appservice exemption of MSC4190.
//
// # Claiming others
//
// Claim runs /keys/query and /keys/claim (over federation for other
// homeservers) and returns only KeyPackages that pass every check listed
// on it; a refusal carries its Reason, and is logged and counted.
//
// # What groups uses
//
// Claim to add devices; FindKeyPackage to open a Welcome; Consume once
// the Welcome is processed; SignatureKey to sign; EnsureIdentity when it
// creates a device.
package keys
