-- Package keys: a KeyPackage's public encoding was stored beside its
-- sealed bundle, which holds the KeyPackage too, and was never read (the
-- upload's body is in the outbox). About a third of every stock row.
ALTER TABLE key_package DROP COLUMN key_package;
