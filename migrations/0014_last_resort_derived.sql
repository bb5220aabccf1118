-- Package keys: a last-resort KeyPackage's row keeps what it is derived
-- from, as a batch does (migration 0011), instead of the whole
-- KeyPackage with its private keys: its template (public) and, sealed in
-- private, the secret that group.DeriveKeyPackage turns into its keys and
-- signatures. Rows made before keep the sealed bundle (template NULL).
ALTER TABLE key_package ADD COLUMN template bytea;
