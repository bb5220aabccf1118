-- A room's messages stored once (package groups, "Delivery log"). Until
-- now a decrypted message was a row per puppet of ours in its room, each
-- with the plaintext sealed to that puppet, under three indexes: nine
-- rows a message in a room of ten, half of PostgreSQL's time in the load
-- command's intake mode, and 100 million rows for a message a second in a
-- room of 10,000 puppets over three hours.
--
-- Now a message is one row of its room's log (room_entry, numbered per
-- room, sealed to the room ID and the number), and each puppet's log
-- holds a span: `n` consecutive sequence numbers of the puppet, ending at
-- last_seq, that stand for `n` consecutive entries of one room's log,
-- starting at first_no. A run of messages is one span a puppet. A
-- puppet's sequence numbers are given as before, under its cursor row's
-- lock, so their order is still commit order and a reader resuming after
-- seq N misses nothing; a span's seqs and the puppet's other entries
-- (membership, MLS state, undecryptable notices, still a row each in
-- delivery) never share a number.
--
-- A span's key is its last seq: "spans with any seq after N" is then a
-- range of the primary key. Within one puppet and room, spans cover
-- disjoint ranges of entries (a message is delivered once; a copy of it
-- is a duplicate), which is what Delivery's lookup by event relies on.
--
-- Messages delivered before this migration stay where they are (rows of
-- delivery with kind 'message'); readers take both. Nothing is copied.
CREATE TABLE room_log (
    room_no bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id text   COLLATE "C" NOT NULL UNIQUE,
    -- the number of the room's last entry; advanced under this row's
    -- lock, held to the commit
    last_no bigint NOT NULL DEFAULT 0
);

CREATE TABLE room_entry (
    room_no       bigint      NOT NULL,
    no            bigint      NOT NULL,
    event_id      text        COLLATE "C" NOT NULL,
    sender        text        NOT NULL,
    sender_device text        NOT NULL DEFAULT '',
    event_type    text        NOT NULL,
    -- sealed: the decrypted event's content, bound to the room ID and no
    content       bytea       NOT NULL,
    origin_ts     bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_no, no),
    -- A message once a room; led by the event ID, so that the
    -- client-server façade finds an event's entry without its room.
    UNIQUE (event_id, room_no)
);

CREATE TABLE delivery_span (
    log_no     bigint      NOT NULL,
    last_seq   bigint      NOT NULL,
    n          integer     NOT NULL CHECK (n > 0),
    room_no    bigint      NOT NULL,
    first_no   bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_no, last_seq)
);
CREATE INDEX delivery_span_room ON delivery_span (log_no, room_no, last_seq);
