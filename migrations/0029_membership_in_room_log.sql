-- A room's membership events stored once, in its log. A membership event
-- was a row of delivery per joined puppet of ours, each with the event's
-- content sealed to that puppet: at n puppets joined, n rows an event,
-- and a room that n of ours join wrote n²/2 rows (50 million at 10,000;
-- 590 B a puppet an event, indexes included).
--
-- Now room_entry holds messages and membership events alike, each saying
-- which it is; a puppet's span stands for a run of either, so a puppet
-- whose room fills up while it talks still has one span for the run.
-- Membership events delivered before stay rows of delivery, which
-- readers still take; MLS state and undecryptable notices stay there
-- (their content depends on the puppet).
ALTER TABLE room_entry ADD COLUMN kind text NOT NULL DEFAULT 'message'
    CHECK (kind IN ('message', 'membership'));
