-- Package keys: a device's current last-resort KeyPackage moves into its
-- puppet_device row. Every device has exactly one, and its own row of
-- key_package took about a fifth of what a device cost (2,220 B at 1,000
-- devices, compacted): a tuple header, the user and device IDs again, its
-- key id (the KeyPackageRef in base64, 44 bytes) and two indexes over
-- them.
--
-- The device's row now holds what the KeyPackage is derived from, as
-- key_package has since migration 0014: its template (public) and secret
-- (sealed to ("puppet_device.last_resort", user ID, device ID, upload
-- row)), with keys.refPrefixLen bytes of its ref to recognise it, its
-- expiry and the outbox row that uploads it: all set or none. A replaced
-- one moves to key_package, retired, and keeps its private keys there for
-- keys.last_resort_grace as before. A current one stored in key_package
-- before this migration stays in use until it is replaced (its secret is
-- sealed to its key id, which SQL cannot re-seal).
ALTER TABLE puppet_device
    ADD COLUMN last_resort_txn       text,
    ADD COLUMN last_resort_ref       bytea,
    ADD COLUMN last_resort_template  bytea,
    ADD COLUMN last_resort_secret    bytea,
    ADD COLUMN last_resort_not_after timestamptz,
    ADD CONSTRAINT puppet_device_last_resort CHECK (
        (last_resort_txn IS NULL) = (last_resort_ref IS NULL) AND
        (last_resort_txn IS NULL) = (last_resort_template IS NULL) AND
        (last_resort_txn IS NULL) = (last_resort_secret IS NULL) AND
        (last_resort_txn IS NULL) = (last_resort_not_after IS NULL));
