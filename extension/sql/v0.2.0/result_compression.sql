-- pg_steadytext 0.2.0: results are compressed with lz4 where PostgreSQL was built with it. A
-- result (an embedding's text is 4–8 kB) is compressed when its row is written: pglz's
-- compression was 9 % of a worker's backend CPU during an embedding backfill (perf), and the
-- engine shares the machine's cores with it. lz4 compresses several times faster; the values
-- read back are the same. Without lz4 the columns keep PostgreSQL's default. The same
-- statements are in pg_steadytext--0.1.0--0.2.0.sql.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE @extschema@.steadytext_queue ALTER COLUMN result SET COMPRESSION lz4;
        ALTER TABLE @extschema@.steadytext_result_cache ALTER COLUMN result SET COMPRESSION lz4;
    END IF;
END
$$;
