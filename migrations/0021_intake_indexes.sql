-- Two indexes that every stored event paid for and no query reads.
-- inbound_event_room indexed the recorded events by room: the lookups
-- go by event ID (inbound_event_event_id), retention by time
-- (inbound_event_recorded). work_item_oldest indexed the items not
-- parked by number, which the primary key already orders: the one query
-- it served (the oldest waiting item's age, for the metrics) reads the
-- primary key from its start and passes over the few parked items.
DROP INDEX inbound_event_room;
DROP INDEX work_item_oldest;
