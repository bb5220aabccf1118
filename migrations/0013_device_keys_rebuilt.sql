-- Package keys: a device's signed device keys object is no longer stored
-- (about 600 of an 824-byte device_identity row at 1,000 devices). Every
-- suite's signatures are deterministic now (Ed25519, and ECDSA by RFC
-- 6979), so the object is rebuilt from the signature key byte for byte
-- as it was uploaded, where it is needed: to upload it again if its upload
-- was given up, and to cross-sign it. Rows made before keep theirs (their
-- ECDSA signatures were randomised) and are read as before.
ALTER TABLE device_identity ALTER COLUMN device_keys DROP NOT NULL;
