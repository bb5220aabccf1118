-- Package keys: a KeyPackage batch keeps 2 bytes of each KeyPackageRef,
-- not 4 (keys.refPrefixLen): 100 bytes less per device of 50 KeyPackages,
-- about a twentieth of what a device costs. A prefix only picks the
-- index to derive again; the whole ref is checked on what it derives, so
-- a prefix shared by chance costs a derivation, never a wrong key. Each
-- stored row keeps the first 2 of every 4 bytes, in index order.
UPDATE key_package_batch SET refs = (
    SELECT string_agg(substring(refs FROM i * 4 + 1 FOR 2), ''::bytea ORDER BY i)
    FROM generate_series(0, length(refs) / 4 - 1) AS i);
