-- Membership history and package keys, slimmer. room_member_event kept
-- each m.room.member event's sender, which nothing reads (membership at an
-- event needs the state key and the membership only): about a sixth of
-- its row. Retention now deletes its rows older than
-- processing.retention but a room member's current event, as it deletes
-- the recorded events that membership at an event is read from
-- (database.Retention). key_package_upload indexed key_package by its
-- upload's outbox row, which no query has looked up since one-time
-- KeyPackages moved to key_package_batch (migration 0011): the joins go
-- from key_package to outbox.
ALTER TABLE room_member_event DROP COLUMN sender;
DROP INDEX key_package_upload;
