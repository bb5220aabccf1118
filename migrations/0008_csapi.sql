-- Package csapi: the client-server façade's sends. A Matrix client names
-- each send with a transaction id of its own, unique per access token
-- (here per puppet device); groups sends the encrypted event with an
-- outbox transaction id of its own. This table maps one to the other, so
-- that a retried PUT returns the first event id and /sync gives the
-- sending device its transaction_id back (as the homeserver would).
-- Rows older than a week are pruned: clients retry within seconds.
CREATE TABLE csapi_txn (
    user_id    text        NOT NULL,
    device_id  text        NOT NULL,
    txn_id     text        NOT NULL,
    room_id    text        NOT NULL,
    outbox_txn text        NOT NULL,
    event_id   text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id, room_id, txn_id)
);
CREATE INDEX csapi_txn_event ON csapi_txn (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX csapi_txn_created ON csapi_txn (created_at);
