-- A device left out of a room because its homeserver had no KeyPackage to
-- give is claimed again after a wait that doubles with each refusal
-- (groups.leftOutRetry); refusals counts them.
ALTER TABLE dmls_left_out ADD COLUMN refusals integer NOT NULL DEFAULT 1;
