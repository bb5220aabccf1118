-- A user's rows found by an index. room_member (the current rows of
-- room_member_event) was indexed by room, then user: a lookup by user
-- alone read every current membership of every room. Two lookups are by
-- user: the rooms to reconcile when a user's device list changes
-- (groups.devicesChanged, for every user of every room whose devices
-- change, remote ones included) and a puppet's rooms (the bot API). At
-- 20,000 members each read 20,000 rows; at a million, a device-list
-- change cost a scan of a million. The index holds current rows only, as
-- room_member_current does: about 40 B a member.
CREATE INDEX room_member_user ON room_member_event (user_id) WHERE current;

-- The same change of device list deletes the user's records of being left
-- out of rooms ("user", and "user|device" for each device): it read every
-- record of every room. An index in byte order finds both: the records
-- that start with "user|" are those from "user|" up to "user}" ('}'
-- follows '|'), and no other user's (groups.leftOutOfUserSQL).
CREATE INDEX dmls_left_out_user ON dmls_left_out (user_id COLLATE "C");
