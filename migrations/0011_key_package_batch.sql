-- Package keys: a device's one-time KeyPackages are stored per upload, as a
-- batch, instead of one row each. KeyPackage i of a batch is derived from
-- output i of an indexed PPRF (mls/pprf) and the batch's template
-- (group.DeriveKeyPackage); the row keeps the PPRF, sealed, in which using
-- a KeyPackage punctures its index, so its private keys are gone as when
-- its row was deleted. At 50 KeyPackages a device, measured at 1,000
-- devices, the batches take 1.1 KB a device where the rows took 38.7 KB. Rows of key_package stay for last-resort
-- KeyPackages, which are replaced rather than punctured, and for the
-- one-time ones made before this migration until they are used or expire.
CREATE TABLE key_package_batch (
    user_id    text        NOT NULL,
    device_id  text        NOT NULL,
    -- the outbox row that uploads the batch: one upload, one batch
    upload_txn text        NOT NULL,
    -- what the batch's KeyPackages share: a KeyPackage without its keys
    -- and signatures (public)
    template   bytea       NOT NULL,
    -- the first 4 bytes of each KeyPackageRef, in index order (public)
    refs       bytea       NOT NULL,
    -- sealed: the indexed PPRF whose outputs are the KeyPackages' secrets
    secrets    bytea       NOT NULL,
    -- how many of them were used (their indexes punctured)
    used       integer     NOT NULL DEFAULT 0,
    not_after  timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id, upload_txn),
    FOREIGN KEY (user_id, device_id) REFERENCES device_identity (user_id, device_id) ON DELETE CASCADE
);
