-- A puppet's span keyed by its first sequence number, not its last. A span
-- grows with each run of its room's entries (package groups, roomlog.go):
-- keyed by its last number, growing changed the key, so each growth wrote
-- a new version of the row with a new entry in both of its indexes, a
-- puppet an entry: in a room of n puppets, n dead index entries an event,
-- and the lookups that grew the next spans stepped over them until
-- autovacuum came. Keyed by its first, growing changes only n, which no
-- index holds: PostgreSQL updates the row in its page (a heap-only tuple)
-- and reclaims the old version when it next reads the page, if the page
-- has room; fillfactor leaves it.
--
-- "The spans with any number after N" is then the spans that begin after
-- N and the one before them (logread.go).
ALTER TABLE delivery_span ADD COLUMN first_seq bigint;
UPDATE delivery_span SET first_seq = last_seq - n + 1;
ALTER TABLE delivery_span ALTER COLUMN first_seq SET NOT NULL;
ALTER TABLE delivery_span DROP CONSTRAINT delivery_span_pkey;
DROP INDEX delivery_span_room;
ALTER TABLE delivery_span DROP COLUMN last_seq;
ALTER TABLE delivery_span ADD PRIMARY KEY (log_no, first_seq);
CREATE INDEX delivery_span_room ON delivery_span (log_no, room_no, first_seq);
ALTER TABLE delivery_span SET (fillfactor = 80);
