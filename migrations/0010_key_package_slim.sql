-- Package keys: a KeyPackage's row held two things it did not need. Its
-- public encoding, beside the sealed bundle that holds the KeyPackage too,
-- was never read (the upload's body is in the outbox). Its ref, with a
-- unique index, repeated key_id, which is the ref's unpadded base64url
-- (keys.keyID): a Welcome's ref is looked up by key_id on the primary key.
-- Together about two fifths of every stock row.
ALTER TABLE key_package DROP COLUMN key_package;
DROP INDEX key_package_ref;
ALTER TABLE key_package DROP COLUMN ref;
