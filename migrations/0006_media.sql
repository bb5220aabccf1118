-- Media offload (DESIGN 6 "Size"): a commit, Welcome or GroupInfo too
-- large for an event is uploaded to the media repository through the
-- outbox, and the event that carries its file object is sent only after
-- the upload, with the content URI filled in.

-- A media_upload row holds the encrypted bytes in content until they are
-- uploaded, then the content URI the homeserver gave them in content_uri
-- (an event row keeps its event id in event_id) and an empty content.
-- Uploads queue per acting device ("out:media:<user>|<device>"), never on
-- a room's queue: the room's event waits for its upload by dependency.
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('room_event', 'to_device', 'key_upload', 'media_upload'));
ALTER TABLE outbox ADD COLUMN content_uri text;
ALTER TABLE outbox DROP CONSTRAINT outbox_shape;
ALTER TABLE outbox ADD CONSTRAINT outbox_shape CHECK (
    (kind = 'room_event' AND room_id IS NOT NULL AND event_type IS NOT NULL AND content_uri IS NULL) OR
    (kind = 'to_device' AND event_type IS NOT NULL AND to_user_id IS NOT NULL AND to_device_id IS NOT NULL
        AND content_uri IS NULL) OR
    (kind = 'key_upload' AND content_uri IS NULL) OR
    (kind = 'media_upload' AND room_id IS NULL AND event_type IS NULL AND to_user_id IS NULL
        AND to_device_id IS NULL AND event_id IS NULL));

-- A row may wait for several earlier rows, each optionally filling a
-- field of its content with that row's result: an offloaded Welcome
-- names its commit's event id (commit_event) and its own upload's content
-- URI (ciphertext_file.url). This replaces outbox.after_seq and
-- fill_field, which held one. pos orders a row's dependencies (0 is the
-- one the Go API calls After); a row waits only for earlier rows, so
-- dependencies never form a cycle.
CREATE TABLE outbox_dependency (
    seq        bigint   NOT NULL REFERENCES outbox (seq) ON DELETE CASCADE,
    pos        smallint NOT NULL CHECK (pos >= 0),
    after_seq  bigint   NOT NULL REFERENCES outbox (seq),
    fill_field text,
    PRIMARY KEY (seq, pos),
    CHECK (after_seq < seq)
);
CREATE INDEX outbox_dependency_after ON outbox_dependency (after_seq);
INSERT INTO outbox_dependency (seq, pos, after_seq, fill_field)
    SELECT seq, 0, after_seq, fill_field FROM outbox WHERE after_seq IS NOT NULL;
ALTER TABLE outbox DROP COLUMN after_seq;
ALTER TABLE outbox DROP COLUMN fill_field;
