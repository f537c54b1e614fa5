-- pg_steadytext 0.2.0: the tables whose rows are users' state, which pg_dump dumps with the
-- data of the database (an extension's own tables are otherwise left to CREATE EXTENSION and
-- come back empty). The same statements are in pg_steadytext--0.1.0--0.2.0.sql.
--
-- steadytext_queue: every request and its result (its identity sequence too, so that restored
-- rows keep their ids and new ones follow them). Not dumped: steadytext_workers (heartbeats of
-- running processes), steadytext_result_cache (recomputed on demand, and possibly large) and
-- steadytext_result_cache_eviction (when the last eviction ran).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_queue', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_queue_id_seq', '');
