-- Package keys: each puppet device's MLS identity, its KeyPackage stock,
-- and each puppet's cross-signing keys. Every secret column holds a value
-- sealed by package seal, bound to its row (table and primary key), so a
-- dump holds no key and a value moved to another row does not open.

-- One MLS identity per puppet device: its signature key (the credential
-- key of DESIGN 6) and the device keys object uploaded for it.
CREATE TABLE device_identity (
    user_id             text        NOT NULL,
    device_id           text        NOT NULL,
    suite               integer     NOT NULL,
    -- sealed: the suite's signature private key
    signature_key       bytea       NOT NULL,
    -- the signed device keys object exactly as uploaded (public), kept so
    -- that a failed upload is repeated with the same body and the
    -- self-signing key signs what the homeserver holds
    device_keys         bytea       NOT NULL,
    device_keys_txn     text        NOT NULL,
    device_keys_sent_at timestamptz,
    cross_signed_at     timestamptz,
    -- KeyPackages the homeserver accepted as one-time keys, and how many of
    -- them others claimed as far as the counts show (metrics)
    otk_sent            bigint      NOT NULL DEFAULT 0,
    otk_claimed         bigint      NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id),
    FOREIGN KEY (user_id, device_id) REFERENCES puppet_device (user_id, device_id) ON DELETE CASCADE
);

-- The KeyPackages a device made, until their private keys are no longer
-- needed. key_id is fixed at generation (from the KeyPackageRef), and
-- upload_txn is the outbox row that uploads it, written in the same
-- transaction: a crash either loses both or re-sends the same body.
CREATE TABLE key_package (
    user_id     text        NOT NULL,
    device_id   text        NOT NULL,
    key_id      text        NOT NULL,
    ref         bytea       NOT NULL,
    last_resort boolean     NOT NULL,
    -- the MLSMessage as uploaded (public)
    key_package bytea       NOT NULL,
    -- sealed: the init and encryption private keys (group.KeyPackageBundle)
    private     bytea       NOT NULL,
    upload_txn  text        NOT NULL,
    not_after   timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- a last-resort KeyPackage that a newer one replaced; its private keys
    -- stay for keys.last_resort_grace
    retired_at  timestamptz,
    PRIMARY KEY (user_id, device_id, key_id),
    FOREIGN KEY (user_id, device_id) REFERENCES device_identity (user_id, device_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX key_package_ref ON key_package (user_id, device_id, ref);
CREATE UNIQUE INDEX key_package_last_resort ON key_package (user_id, device_id)
    WHERE last_resort AND retired_at IS NULL;
CREATE INDEX key_package_upload ON key_package (upload_txn);

-- Each puppet's cross-signing keys (Ed25519 seeds, sealed). uploaded_at is
-- set once the homeserver accepted them; the upload is repeated from these
-- values until then, so keys are never lost after an upload.
CREATE TABLE puppet_cross_signing (
    user_id          text        PRIMARY KEY REFERENCES puppet (user_id) ON DELETE CASCADE,
    master_key       bytea       NOT NULL,
    self_signing_key bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    uploaded_at      timestamptz
);
