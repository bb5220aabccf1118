-- Outgoing events (DESIGN 3.4). A row is written in the same database
-- transaction as the state change that produced it, and txn_id is fixed
-- at that moment: a retry after a crash re-sends with the same
-- transaction id, which the homeserver deduplicates.
CREATE TABLE outbox (
    seq        bigserial   PRIMARY KEY,
    txn_id     text        NOT NULL UNIQUE,
    user_id    text        NOT NULL,
    device_id  text        NOT NULL DEFAULT '',
    room_id    text        NOT NULL,
    event_type text        NOT NULL,
    content    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    event_id   text,
    failed_at  timestamptz,
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL AND failed_at IS NULL;
