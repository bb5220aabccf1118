-- Our devices' private parts of one retained epoch in one row, not a row
-- each (package groups, "Storage"): a device's part is about 200 bytes,
-- and a row of its own carried the room and epoch ids, a tuple header
-- and a wide primary-key entry besides, as much again. The arrays are
-- parallel (element i of each is one device); each private part is
-- sealed and bound, as before, to its room, epoch and device, not to its
-- place, so moving the sealed values here needs no key.
CREATE TABLE dmls_epoch_private (
    room_id    text    NOT NULL,
    epoch_id   bytea   NOT NULL,
    user_ids   text[]  NOT NULL,
    device_ids text[]  NOT NULL,
    privates   bytea[] NOT NULL,
    PRIMARY KEY (room_id, epoch_id),
    FOREIGN KEY (room_id, epoch_id) REFERENCES dmls_epoch (room_id, epoch_id) ON DELETE CASCADE,
    CHECK (cardinality(user_ids) > 0 AND cardinality(user_ids) = cardinality(device_ids)
        AND cardinality(user_ids) = cardinality(privates))
);

INSERT INTO dmls_epoch_private (room_id, epoch_id, user_ids, device_ids, privates)
SELECT room_id, epoch_id,
    array_agg(user_id ORDER BY user_id, device_id),
    array_agg(device_id ORDER BY user_id, device_id),
    array_agg(private ORDER BY user_id, device_id)
FROM dmls_epoch_device
GROUP BY room_id, epoch_id;

DROP TABLE dmls_epoch_device;
