-- The membership record names its room by number. Each row of
-- room_member_event held the room's ID as text (30 to 45 bytes), and
-- room_member_current indexed it again beside the user's ID: at rooms of
-- ten, 114 of the 1,352 B a member cost at rest (the membership record
-- 696 of them). A room's number is room_log's (migration
-- 0025), which every room whose messages we log has already; a membership
-- event of a room not yet numbered numbers it (database.RoomNumber). The
-- room_member view names rooms by ID as before, so its readers are
-- unchanged.
--
-- room_log.room_id is COLLATE "C" where room_member_event's was the
-- database's default: equality is the same (both deterministic), and a
-- puppet's rooms listed in the view's room order now come in byte order.
INSERT INTO room_log (room_id) SELECT DISTINCT room_id FROM room_member_event
    ON CONFLICT (room_id) DO NOTHING;
DROP VIEW room_member;
ALTER TABLE room_member_event ADD COLUMN room_no bigint;
UPDATE room_member_event m SET room_no = r.room_no FROM room_log r WHERE r.room_id = m.room_id;
ALTER TABLE room_member_event ALTER COLUMN room_no SET NOT NULL;
-- Drops room_member_current and room_member_event_room with it.
ALTER TABLE room_member_event DROP COLUMN room_id;
CREATE UNIQUE INDEX room_member_current ON room_member_event (room_no, user_id) WHERE current;
CREATE INDEX room_member_event_room ON room_member_event (room_no);
CREATE VIEW room_member AS
    SELECT r.room_id, m.user_id, m.membership, m.event_id, m.room_no
    FROM room_member_event m JOIN room_log r USING (room_no) WHERE m.current;
