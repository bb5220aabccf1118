-- The homeserver's transactions and the events taken from them compress
-- with LZ4, not PostgreSQL's default pglz. A transaction body is JSON of
-- base64 ciphertexts (27 KB on average in the load command's intake
-- mode); pglz spent a third of a millisecond on each. Measured in psql on
-- that run's 686 bodies: pglz 323 ms, 13.6 MB; LZ4 48 ms, 8.7 MB. New
-- values only: stored ones stay as they are, readable either way.
--
-- A server built without LZ4 refuses the setting (feature_not_supported):
-- it then keeps pglz, as before, rather than failing the migration.
DO $$
BEGIN
    ALTER TABLE appservice_transaction ALTER COLUMN body SET COMPRESSION lz4;
    ALTER TABLE inbound_event ALTER COLUMN raw SET COMPRESSION lz4;
    ALTER TABLE work_item ALTER COLUMN payload SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'PostgreSQL was built without LZ4: transaction bodies keep pglz';
END
$$;
