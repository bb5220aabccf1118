-- Package keys: a device's MLS identity moves into its puppet_device row.
-- device_identity held one row per device beside puppet_device's, keyed
-- by the same user and device IDs: a second heap tuple, the two IDs again
-- and a second primary-key entry, about 140 of the 287 bytes it took a
-- device at 10,000 devices. A device without an identity yet (made before
-- package keys existed, or by a caller that leaves it to the sweep) has
-- the identity's columns NULL, all of them or none. The sealed signature
-- key keeps its binding ("device_identity", user ID, device ID), so it
-- opens as before; keys.SealedColumns names it for `keys reseal`.
ALTER TABLE puppet_device
    ADD COLUMN suite               integer,
    ADD COLUMN signature_key       bytea,
    ADD COLUMN device_keys         bytea,
    ADD COLUMN device_keys_txn     text,
    ADD COLUMN device_keys_sent_at timestamptz,
    ADD COLUMN cross_signed_at     timestamptz,
    ADD COLUMN otk_sent            bigint NOT NULL DEFAULT 0,
    ADD COLUMN otk_claimed         bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT puppet_device_identity CHECK (
        (suite IS NULL) = (signature_key IS NULL) AND (suite IS NULL) = (device_keys_txn IS NULL));

UPDATE puppet_device d SET suite = i.suite, signature_key = i.signature_key, device_keys = i.device_keys,
    device_keys_txn = i.device_keys_txn, device_keys_sent_at = i.device_keys_sent_at,
    cross_signed_at = i.cross_signed_at, otk_sent = i.otk_sent, otk_claimed = i.otk_claimed
FROM device_identity i WHERE i.user_id = d.user_id AND i.device_id = d.device_id;

-- CASCADE drops key_package's and key_package_batch's foreign keys to it;
-- they point at the device's row instead.
DROP TABLE device_identity CASCADE;
ALTER TABLE key_package ADD FOREIGN KEY (user_id, device_id)
    REFERENCES puppet_device (user_id, device_id) ON DELETE CASCADE;
ALTER TABLE key_package_batch ADD FOREIGN KEY (user_id, device_id)
    REFERENCES puppet_device (user_id, device_id) ON DELETE CASCADE;
