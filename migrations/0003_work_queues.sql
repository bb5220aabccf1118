-- The spine of DESIGN 3: stored transactions are split into work items on
-- per-room and per-device queues, processed in parallel across queues and
-- in order within each; outgoing work uses the same queues; timers are rows.

-- 3.1 txnId reuse. Synapse on SQLite starts its txnIds again after a
-- restart, so a txnId alone does not identify a transaction: a repeat with
-- the same body is the homeserver retrying, one with another body is new.
ALTER TABLE appservice_transaction ADD COLUMN body_sha256 bytea;
UPDATE appservice_transaction SET body_sha256 = sha256(body);
ALTER TABLE appservice_transaction ALTER COLUMN body_sha256 SET NOT NULL;
ALTER TABLE appservice_transaction DROP CONSTRAINT appservice_transaction_txn_id_key;
ALTER TABLE appservice_transaction ADD CONSTRAINT appservice_transaction_txn_body
    UNIQUE (txn_id, body_sha256);
-- processed_at now means "split into work items".
CREATE INDEX appservice_transaction_processed ON appservice_transaction (processed_at)
    WHERE processed_at IS NOT NULL;

-- Records refer to the transaction they came from for provenance only:
-- retention deletes old transactions while their latest effects (a key
-- count, a device's fallback keys) stay current.
ALTER TABLE inbound_event DROP CONSTRAINT inbound_event_txn_seq_fkey;
ALTER TABLE inbound_event ALTER COLUMN txn_seq DROP NOT NULL;
CREATE INDEX inbound_event_recorded ON inbound_event (recorded_at);
ALTER TABLE device_list_change DROP CONSTRAINT device_list_change_txn_seq_fkey;
ALTER TABLE device_list_change ALTER COLUMN txn_seq DROP NOT NULL;
ALTER TABLE device_list_change ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX device_list_change_recorded ON device_list_change (recorded_at);
ALTER TABLE device_key_count DROP CONSTRAINT device_key_count_txn_seq_fkey;
ALTER TABLE device_key_count ALTER COLUMN txn_seq DROP NOT NULL;
ALTER TABLE device_fallback_key DROP CONSTRAINT device_fallback_key_txn_seq_fkey;
ALTER TABLE device_fallback_key ALTER COLUMN txn_seq DROP NOT NULL;

-- Membership per event (DESIGN 5): the membership authority asks for the
-- room's membership at a given event, not only the latest.
CREATE TABLE room_member_event (
    event_id    text        PRIMARY KEY,
    room_id     text        NOT NULL,
    user_id     text        NOT NULL,
    membership  text        NOT NULL,
    sender      text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX room_member_event_room ON room_member_event (room_id, user_id);

-- 3.2 Queues. One row per queue, named by what it orders ("in:room:<id>",
-- "in:device:<user>|<device>", "out:room:<id>", ...). A worker holds a
-- queue for the length of one database transaction with a transaction-level
-- advisory lock on lock_key, not a row lock, so that producers can raise
-- pending without waiting for a worker's handler to finish. pending counts
-- unfinished entries (items, or outbox rows) and is changed only by the
-- transaction that adds or finishes them; due_at is when the queue's head
-- may next be tried (now, or later after a failure).
CREATE SEQUENCE work_queue_lock_key;
CREATE TABLE work_queue (
    queue    text        PRIMARY KEY,
    side     text        NOT NULL CHECK (side IN ('in', 'out')),
    lock_key bigint      NOT NULL UNIQUE DEFAULT nextval('work_queue_lock_key'),
    pending  integer     NOT NULL DEFAULT 0 CHECK (pending >= 0),
    due_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX work_queue_ready ON work_queue (side, due_at) WHERE pending > 0;

-- Inbound work items, in queue order by seq. A finished item is deleted
-- in the transaction that applied it; a parked one stays, with its error,
-- until an operator retries or drops it.
CREATE TABLE work_item (
    seq        bigserial   PRIMARY KEY,
    queue      text        NOT NULL,
    kind       text        NOT NULL,
    txn_seq    bigint,
    room_id    text,
    event_id   text,
    payload    bytea       NOT NULL,
    parked     boolean     NOT NULL DEFAULT false,
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    parked_at  timestamptz
);
CREATE INDEX work_item_queue ON work_item (queue, seq) WHERE NOT parked;
CREATE INDEX work_item_oldest ON work_item (seq) WHERE NOT parked;
CREATE INDEX work_item_parked ON work_item (seq) WHERE parked;

-- 3.6 Timers: work due at a time (the committer's grace period, KeyPackage
-- top-up, retention). (kind, key) names one timer, so scheduling is
-- idempotent. A timer that names a queue runs under that queue's lock, in
-- order with the queue's items.
CREATE TABLE timer (
    kind       text        NOT NULL,
    key        text        NOT NULL,
    queue      text,
    due_at     timestamptz NOT NULL,
    payload    bytea       NOT NULL DEFAULT ''::bytea,
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text,
    PRIMARY KEY (kind, key)
);
CREATE INDEX timer_due ON timer (due_at);

-- 3.4 The outbox: a kind, a queue (the room for room events, the sending
-- device for to-device messages and key uploads) and an optional earlier
-- row it must wait for. fill_field names a top-level content field that
-- receives that row's event id when this one is sent (a Welcome names its
-- commit's event). hook lets the producer learn the event id (epoch's
-- commit_event) in the transaction that marks the row sent.
ALTER TABLE outbox ADD COLUMN kind text NOT NULL DEFAULT 'room_event'
    CHECK (kind IN ('room_event', 'to_device', 'key_upload'));
ALTER TABLE outbox ADD COLUMN queue text;
UPDATE outbox SET queue = 'out:room:' || room_id;
ALTER TABLE outbox ALTER COLUMN queue SET NOT NULL;
ALTER TABLE outbox ALTER COLUMN room_id DROP NOT NULL;
ALTER TABLE outbox ALTER COLUMN event_type DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN to_user_id text;
ALTER TABLE outbox ADD COLUMN to_device_id text;
ALTER TABLE outbox ADD COLUMN after_seq bigint REFERENCES outbox (seq);
ALTER TABLE outbox ADD COLUMN fill_field text;
ALTER TABLE outbox ADD COLUMN hook text;
ALTER TABLE outbox ADD COLUMN hook_ref bytea;
ALTER TABLE outbox ADD CONSTRAINT outbox_shape CHECK (
    (kind = 'room_event' AND room_id IS NOT NULL AND event_type IS NOT NULL) OR
    (kind = 'to_device' AND event_type IS NOT NULL AND to_user_id IS NOT NULL AND to_device_id IS NOT NULL) OR
    (kind = 'key_upload'));
DROP INDEX outbox_pending;
CREATE INDEX outbox_queue ON outbox (queue, seq) WHERE sent_at IS NULL AND failed_at IS NULL;
INSERT INTO work_queue (queue, side, pending)
    SELECT queue, 'out', count(*) FROM outbox WHERE sent_at IS NULL AND failed_at IS NULL GROUP BY queue;
