-- A to-device row may go to several devices with the same content, in one
-- /sendToDevice request: a commit that adds n devices sent n requests for
-- one Welcome, each a round trip to a homeserver that takes about a dozen
-- requests a second from a busy service. also_to holds the recipients
-- beyond to_user_id/to_device_id, in the request's own shape: an object
-- from user id to an array of device ids.
ALTER TABLE outbox ADD COLUMN also_to jsonb;
ALTER TABLE outbox ADD CONSTRAINT outbox_also_to CHECK (
    also_to IS NULL OR (kind = 'to_device' AND jsonb_typeof(also_to) = 'object'));
