-- pg_steadytext 0.1.0 → 0.2.0 (run by ALTER EXTENSION pg_steadytext UPDATE). 0.2.0 is not
-- released yet: what it adds lands here and in its base files (extension/sql/v0.2.0/) together,
-- and the regress tier checks that an installation upgraded from 0.1.0 has exactly the objects
-- of a fresh one (extension/tests/pg_regress/sql/extension_lifecycle.sql).
\echo Use "ALTER EXTENSION pg_steadytext UPDATE" to load this file. \quit

-- v0.2.0/dumped_tables.sql: the queue's rows are dumped with the database
SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_queue', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_queue_id_seq', '');
