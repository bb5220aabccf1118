-- A room's membership events and applied commits stored once, in its log.
-- A membership event was a row of delivery per joined puppet of ours,
-- each with the event's content sealed to that puppet: at n puppets
-- joined, n rows an event, and a room that n of ours join wrote n²/2
-- rows (50 million at 10,000; 590 B a puppet an event, indexes
-- included). A commit applied (an mls_state entry) was as many.
--
-- Now room_entry holds messages, membership events and commits' MLS
-- state alike, each saying which it is; a puppet's span stands for a run
-- of any of them, so a puppet whose room fills up while it talks still
-- has one span for the run. Entries delivered before stay rows of
-- delivery, which readers still take. A device's join told to its own
-- puppet and undecryptable notices stay there too: the first shares its
-- commit's event, the second an event that may yet be decrypted, and the
-- room's log keeps one entry an event.
ALTER TABLE room_entry ADD COLUMN kind text NOT NULL DEFAULT 'message'
    CHECK (kind IN ('message', 'membership', 'mls_state'));
