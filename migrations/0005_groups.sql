-- Package groups: the DMLS state of each room our puppets take part in,
-- stored once per room for all our devices (DESIGN 4, 8), and the
-- per-puppet log of what was delivered. Secret columns hold values sealed
-- by package seal and bound to their row.

-- A DMLS room (its m.room.create named a DMLS algorithm). graph is the
-- room's epoch graph as package epochs encodes it: epoch ids, parents,
-- confirmation tags, creators, commit events, and what it remembers of
-- commits; public (all of it travels in room events), so not sealed.
-- state: 'pending' until one of our devices holds an epoch, then
-- 'active'; 'left' once none of ours is in the group any more.
CREATE TABLE dmls_room (
    room_id      text        PRIMARY KEY,
    suite        integer     NOT NULL,
    algorithm    text        NOT NULL,
    create_event text,
    creator      text,
    state        text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'active', 'left')),
    graph        bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One retained epoch's state that all our devices share, in the three
-- parts that change at different times: written once when the epoch is
-- made (static: group context, ratchet tree, transcript hashes, epoch
-- secrets), when a child epoch is derived from it (init: the DMLS
-- puncturable PRF), and when a message is encrypted or decrypted in it
-- (secrets: the secret tree's ratchets). All three sealed.
-- commit is the commit message that made the epoch (public), which the
-- epoch keeps to recognise its echo.
CREATE TABLE dmls_epoch (
    room_id    text        NOT NULL REFERENCES dmls_room (room_id) ON DELETE CASCADE,
    epoch_id   bytea       NOT NULL,
    static     bytea       NOT NULL,
    init       bytea       NOT NULL,
    secrets    bytea       NOT NULL,
    commit     bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, epoch_id)
);

-- The private part of one of our devices in one epoch (leaf index,
-- private tree keys; the signature key stays in device_identity): sealed.
CREATE TABLE dmls_epoch_device (
    room_id   text  NOT NULL,
    epoch_id  bytea NOT NULL,
    user_id   text  NOT NULL,
    device_id text  NOT NULL,
    private   bytea NOT NULL,
    PRIMARY KEY (room_id, epoch_id, user_id, device_id),
    FOREIGN KEY (room_id, epoch_id) REFERENCES dmls_epoch (room_id, epoch_id) ON DELETE CASCADE
);

-- Our own commits: the outbox row that sends each, and the event id the
-- homeserver gave it once sent (written by the outbox's hook, outside the
-- room's queue, and merged into the graph when the room is next loaded).
-- A message or commit made on an epoch whose commit is not sent yet waits
-- for that row and takes its event id as commit_event.
CREATE TABLE dmls_commit_event (
    room_id    text   NOT NULL,
    epoch_id   bytea  NOT NULL,
    outbox_seq bigint NOT NULL,
    event_id   text,
    PRIMARY KEY (room_id, epoch_id)
);

-- Our own application messages, by the SHA-256 of their ciphertext, so
-- that their echo is delivered to our other puppets in the room (a sender
-- cannot decrypt its own message: its ratchet moved on). Sealed plaintext.
CREATE TABLE dmls_sent (
    digest     bytea       PRIMARY KEY,
    room_id    text        NOT NULL,
    user_id    text        NOT NULL,
    device_id  text        NOT NULL,
    plaintext  bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dmls_sent_created ON dmls_sent (created_at);

-- A send request by idempotency key: a retried request finds its first
-- result and is not sent twice.
CREATE TABLE dmls_send (
    idempotency_key text        PRIMARY KEY,
    room_id         text        NOT NULL,
    user_id         text        NOT NULL,
    txn_id          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Room events that name an epoch we do not hold yet (a message or a
-- commit that arrived before the commit it depends on): kept until that
-- epoch arrives or expires_at passes, then undecryptable.
CREATE TABLE dmls_waiting (
    room_id     text        NOT NULL,
    event_id    text        NOT NULL,
    epoch_id    bytea       NOT NULL,
    event       bytea       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
CREATE INDEX dmls_waiting_epoch ON dmls_waiting (room_id, epoch_id);

-- MLS devices of users, from /keys/query (devices that publish a DMLS
-- credential of our suite), as last fetched.
CREATE TABLE user_mls_devices (
    user_id    text        PRIMARY KEY,
    devices    text[]      NOT NULL,
    fetched_at timestamptz NOT NULL DEFAULT now()
);

-- Joined users left out of a room's group because they have no MLS
-- device: reported once, not retried in a loop (a device-list change of
-- the user brings them back into the plan).
CREATE TABLE dmls_left_out (
    room_id    text        NOT NULL,
    user_id    text        NOT NULL,
    reason     text        NOT NULL,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, user_id)
);

-- Devices of ours that the group's tree holds but for which we hold no
-- private state: their Welcome has not arrived (Synapse drops to-device
-- messages to an appservice that is down). After groups.wait the room
-- removes such a device, and adds it again, with a new Welcome.
CREATE TABLE dmls_orphan (
    room_id text        NOT NULL,
    device  text        NOT NULL,
    since   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, device)
);

-- What each puppet was given, in order: messages, membership changes,
-- the room's MLS state changes, undecryptable notices. seq counts per
-- puppet under the puppet's row lock in delivery_cursor, so the order of
-- seq is the order of commits: a reader that resumes after seq N never
-- misses a row committed later with a smaller number.
CREATE TABLE delivery_cursor (
    user_id  text   PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0
);
CREATE TABLE delivery (
    user_id       text        NOT NULL,
    seq           bigint      NOT NULL,
    room_id       text        NOT NULL,
    event_id      text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('message', 'membership', 'mls_state', 'undecryptable')),
    sender        text        NOT NULL,
    sender_device text        NOT NULL DEFAULT '',
    event_type    text        NOT NULL,
    -- sealed: the event's content (plaintext for messages)
    content       bytea       NOT NULL,
    origin_ts     bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seq),
    UNIQUE (user_id, event_id, kind)
);
CREATE INDEX delivery_room ON delivery (user_id, room_id, seq);
