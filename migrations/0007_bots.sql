-- Packages bots and botapi: the bots that use the service's own HTTP API
-- (botapi) and the client-server façade (csapi), what they own, and what
-- the bot API keeps to deliver events to them.

-- A bot program registered by the operator (mls-appservice bots add).
-- Its token is "mlsbot_<id>_<secret>": token_id is the public half, by
-- which the row is found, and token_hash the SHA-256 of the secret half,
-- compared in constant time. A token is 256 random bits, so a plain hash
-- is enough (no password-style stretching); the token itself is never
-- stored. A revoked bot keeps its row (and its name and puppets), so that
-- nobody else can take them over.
CREATE TABLE bot (
    name       text        PRIMARY KEY,
    token_id   bytea       NOT NULL UNIQUE,
    token_hash bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Which bot owns which puppet: a bot acts only as its own puppets. A
-- deleted puppet keeps its owner, so that another bot cannot claim the
-- same Matrix user (and the rooms and history it had).
CREATE TABLE bot_puppet (
    user_id    text        PRIMARY KEY,
    bot        text        NOT NULL REFERENCES bot (name),
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
CREATE INDEX bot_puppet_bot ON bot_puppet (bot, user_id);

-- Access tokens of one puppet's device ("mlsat_<id>_<secret>", stored as
-- bot tokens are), issued by `bots token` and by the bot API, for the
-- client-server façade.
CREATE TABLE bot_access_token (
    token_id   bytea       PRIMARY KEY,
    token_hash bytea       NOT NULL,
    bot        text        NOT NULL REFERENCES bot (name),
    user_id    text        NOT NULL REFERENCES bot_puppet (user_id),
    device_id  text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX bot_access_token_device ON bot_access_token (user_id, device_id);

-- The bot API's event log of each bot (package botapi, doc.go "Resume"):
-- the entries of its puppets' delivery logs, copied in the order their
-- copying committed, under one number per bot, so that one Last-Event-ID
-- resumes a stream of all of a bot's puppets exactly. bot_event_cursor
-- holds the last number given; its row lock orders the copies, so a
-- reader after seq N never misses a row committed later with a smaller
-- number. bot_fanin holds how far each puppet's log has been copied.
CREATE TABLE bot_event_cursor (
    bot      text   PRIMARY KEY REFERENCES bot (name),
    last_seq bigint NOT NULL DEFAULT 0
);
CREATE TABLE bot_fanin (
    user_id  text   PRIMARY KEY REFERENCES bot_puppet (user_id),
    bot      text   NOT NULL REFERENCES bot (name),
    last_seq bigint NOT NULL DEFAULT 0
);
CREATE TABLE bot_event (
    bot          text        NOT NULL,
    seq          bigint      NOT NULL,
    user_id      text        NOT NULL,
    puppet_seq   bigint      NOT NULL,
    delivered_at timestamptz NOT NULL,
    PRIMARY KEY (bot, seq),
    UNIQUE (user_id, puppet_seq)
);

-- A bot's webhook: every entry of its event log after position is POSTed
-- to url, in order, one at a time, signed with secret (sealed). attempts
-- counts failures of the next entry; after botapi.webhook_attempts the
-- webhook is parked (parked_at) until the bot resumes it. lease_until
-- marks a delivery in flight, so that two instances never send the same
-- webhook at once.
CREATE TABLE bot_webhook (
    bot             text        PRIMARY KEY REFERENCES bot (name),
    url             text        NOT NULL,
    secret          bytea       NOT NULL,
    position        bigint      NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    parked_at       timestamptz,
    last_error      text        NOT NULL DEFAULT '',
    delivered       bigint      NOT NULL DEFAULT 0,
    failures        bigint      NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now()
);
