-- Transaction intake (DESIGN 3.1): the raw body as Synapse sent it, stored
-- before the PUT is answered. seq gives arrival order; processed_at is set in
-- the same database transaction as the effects of processing.
CREATE TABLE appservice_transaction (
    seq          bigserial   PRIMARY KEY,
    txn_id       text        NOT NULL UNIQUE,
    body         bytea       NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);
CREATE INDEX appservice_transaction_pending ON appservice_transaction (seq)
    WHERE processed_at IS NULL;

-- What arrived: one row per room event, ephemeral event and to-device event
-- handled. Deliberately without a uniqueness constraint on event_id, so a
-- transaction processed twice would show up as duplicates instead of being
-- hidden.
CREATE TABLE inbound_event (
    seq          bigserial   PRIMARY KEY,
    txn_seq      bigint      NOT NULL REFERENCES appservice_transaction (seq),
    kind         text        NOT NULL CHECK (kind IN ('room', 'ephemeral', 'to_device')),
    event_type   text        NOT NULL,
    room_id      text,
    event_id     text,
    sender       text,
    to_user_id   text,
    to_device_id text,
    raw          bytea       NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbound_event_room ON inbound_event (room_id, seq);
CREATE INDEX inbound_event_event_id ON inbound_event (event_id);

-- The room's membership as the m.room.member state events told us; the
-- authority for MLS membership in later issues (DESIGN 5).
CREATE TABLE room_member (
    room_id    text        NOT NULL,
    user_id    text        NOT NULL,
    membership text        NOT NULL,
    event_id   text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

CREATE TABLE device_list_change (
    seq     bigserial PRIMARY KEY,
    txn_seq bigint    NOT NULL REFERENCES appservice_transaction (seq),
    user_id text      NOT NULL,
    change  text      NOT NULL CHECK (change IN ('changed', 'left'))
);

-- Latest one-time key counts per device and algorithm (MSC3202).
CREATE TABLE device_key_count (
    user_id    text        NOT NULL,
    device_id  text        NOT NULL,
    algorithm  text        NOT NULL,
    count      integer     NOT NULL,
    txn_seq    bigint      NOT NULL REFERENCES appservice_transaction (seq),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Latest unused fallback key types per device (MSC3202).
CREATE TABLE device_fallback_key (
    user_id      text        NOT NULL,
    device_id    text        NOT NULL,
    unused_types text[]      NOT NULL,
    txn_seq      bigint      NOT NULL REFERENCES appservice_transaction (seq),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id)
);

-- Users of our namespace that we registered on the homeserver, and the
-- devices we created for them through MSC4190.
CREATE TABLE puppet (
    user_id       text        PRIMARY KEY,
    registered_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE puppet_device (
    user_id      text        NOT NULL REFERENCES puppet (user_id),
    device_id    text        NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id)
);
