-- The puppets' logs kept for groups.log_retention rather than for ever
-- (package groups, logprune.go). Until now nothing deleted an entry: every
-- message decrypted for a bot stayed in PostgreSQL, sealed but readable by
-- whoever holds the database and its key, long after the bot read it, and
-- the logs grew with every message for as long as the service ran.
--
-- Retention finds old entries by their time. A log's numbers follow time
-- only nearly (an entry is numbered under its cursor's lock, and stamped
-- with its transaction's start), and room_entry, delivery_span and
-- delivery are each keyed by numbers, so each gets an index on created_at.
-- An entry of a run shares its transaction's timestamp with the run's
-- other entries and spans, so B-tree deduplication stores most of these
-- keys once per run.
CREATE INDEX room_entry_created ON room_entry (created_at);
CREATE INDEX delivery_span_created ON delivery_span (created_at);
CREATE INDEX delivery_created ON delivery (created_at);
