-- Run once by the postgres image on an empty data directory
-- (/docker-entrypoint-initdb.d): Synapse's own database in the same
-- PostgreSQL service as the appservice's, as production Synapses use.
-- Synapse requires the C collation and ctype (its docs, "Using Postgres").
CREATE DATABASE synapse
    OWNER mls_appservice
    ENCODING 'UTF8'
    LC_COLLATE 'C'
    LC_CTYPE 'C'
    TEMPLATE template0;
