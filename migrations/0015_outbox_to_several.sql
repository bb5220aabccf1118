-- A to-device row may go to several devices with the same content, in one
-- /sendToDevice request: a commit that adds n devices sent n requests for
-- one Welcome, and a homeserver that takes a dozen requests a second made
-- the Welcomes of a busy service late by tens of seconds (1,000 puppets
-- joining 100 rooms), long enough for the rooms to take the devices for
-- orphans. also_to holds the recipients beyond to_user_id/to_device_id,
-- in the request's own shape: an object from user id to an array of
-- device ids.
ALTER TABLE outbox ADD COLUMN also_to jsonb;
ALTER TABLE outbox ADD CONSTRAINT outbox_also_to CHECK (
    also_to IS NULL OR (kind = 'to_device' AND jsonb_typeof(also_to) = 'object'));
