-- A room member's current membership stored once. room_member held each
-- member's latest m.room.member event (membership and event ID), a copy
-- of a row of room_member_event that retention keeps for that reason: the
-- same record twice, under two indexes on (room_id, user_id), about 300 B
-- of the 811 B a member the membership record took at rooms of ten.
--
-- Now the event's row says it is current, a unique partial index finds a
-- member's current event (and allows one), and room_member is a view of
-- the current rows, so that its readers are unchanged. The index over
-- all of a room's events (membership at an event reads them) keys on the
-- room alone: B-tree deduplication then stores a room's key once.
--
-- Carried over: each room_member row marks its event current; a row
-- whose event was never recorded (none should exist: both were written
-- together since migration 0003) gets its event recorded.
ALTER TABLE room_member_event ADD COLUMN current boolean NOT NULL DEFAULT false;
INSERT INTO room_member_event (event_id, room_id, user_id, membership, recorded_at)
    SELECT event_id, room_id, user_id, membership, updated_at FROM room_member
    ON CONFLICT (event_id) DO NOTHING;
UPDATE room_member_event e SET current = true FROM room_member r
    WHERE e.event_id = r.event_id AND e.room_id = r.room_id AND e.user_id = r.user_id;
DROP TABLE room_member;
CREATE UNIQUE INDEX room_member_current ON room_member_event (room_id, user_id) WHERE current;
DROP INDEX room_member_event_room;
CREATE INDEX room_member_event_room ON room_member_event (room_id);
CREATE VIEW room_member AS
    SELECT room_id, user_id, membership, event_id FROM room_member_event WHERE current;
