-- Package groups: a device of ours that the group holds without its keys
-- (an orphan) was removed a wait after it became one, and added again
-- with a new Welcome. When Welcomes are late because the homeserver is
-- backlogged (seen at 1,000 puppets joining 100 rooms: to-device messages
-- about 50 s late with groups.wait at 30 s), the new Welcome is as late
-- as the first, and the room removed and added the same devices again and
-- again, each round adding to the backlog. Each removal now doubles the
-- device's next wait, so the record outlives the orphan state:
--   since      set while the device is an orphan, NULL once it is not
--              (it got its keys or was removed);
--   removals   how often it was removed as an orphan in this room;
--   updated_at when the record last changed: one that is no orphan is
--              forgotten a day later (groups.orphanMemory), or at once
--              if it was never removed.
ALTER TABLE dmls_orphan ALTER COLUMN since DROP NOT NULL;
ALTER TABLE dmls_orphan ALTER COLUMN since DROP DEFAULT;
ALTER TABLE dmls_orphan ADD COLUMN removals integer NOT NULL DEFAULT 0;
ALTER TABLE dmls_orphan ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
