-- A role named steadytext_worker that the extension did not create is never adopted: its
-- members would read and complete every role's requests. (Runs last: it drops and creates the
-- extension again, with the traps of search_path_traps still planted in its schema.)
DROP VIEW traps.steadytext_queue, traps.steadytext_workers, traps.steadytext_result_cache,
          traps.steadytext_derivations, traps.steadytext_derivation_rows,
    traps.steadytext_result_cache_eviction;
DROP EXTENSION pg_steadytext;
COMMENT ON ROLE steadytext_worker IS NULL;
CREATE EXTENSION pg_steadytext;
COMMENT ON ROLE steadytext_worker IS 'pg_steadytext queue workers (created by the extension)';
ALTER ROLE steadytext_worker LOGIN;
CREATE EXTENSION pg_steadytext;
ALTER ROLE steadytext_worker NOLOGIN;
CREATE EXTENSION pg_steadytext;
SELECT extname FROM pg_extension WHERE extname = 'pg_steadytext';
-- creating it again ran none of the traps planted in its schema (public)
SELECT trap, by_role FROM trap_log.fired ORDER BY 1;
