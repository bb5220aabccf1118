-- inbound_event_room indexed the recorded events by room, and every
-- stored event paid for it, but no query reads it: the lookups go by
-- event ID (inbound_event_event_id), retention by time
-- (inbound_event_recorded). (work_item_oldest looks as redundant, the
-- primary key ordering the same numbers, but it stays: without it, the
-- backlog query of every readiness probe would pass over every parked
-- item, and bad events from the homeserver are what parks them.)
DROP INDEX inbound_event_room;
