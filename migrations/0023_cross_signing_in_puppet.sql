-- Package keys: a puppet's cross-signing keys move into its puppet row,
-- and a puppet made from now on stores one sealed seed: its master key's,
-- from which the self-signing key is derived (self_signing_key NULL).
-- puppet_cross_signing held one row per puppet beside puppet's, keyed by
-- the same user ID: a second heap tuple, user ID and primary-key entry
-- for each puppet. At 10,000 puppets the table took 285 bytes a puppet;
-- the keys now take about 100 in puppet's row. The sealed values keep
-- their binding ("puppet_cross_signing", user ID), so they open as
-- before; keys.SealedColumns names it for `keys reseal`.
ALTER TABLE puppet
    ADD COLUMN master_key                bytea,
    ADD COLUMN self_signing_key          bytea,
    ADD COLUMN cross_signing_uploaded_at timestamptz;

UPDATE puppet p SET master_key = c.master_key, self_signing_key = c.self_signing_key,
    cross_signing_uploaded_at = c.uploaded_at
FROM puppet_cross_signing c WHERE c.user_id = p.user_id;

DROP TABLE puppet_cross_signing;
