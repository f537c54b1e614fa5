-- pg_steadytext 0.1.0: the result cache every worker shares. Each daemon keeps a local cache
-- (memory + its own file); behind it, workers and daemons connected to the database read this
-- table before computing and write what they computed, so a result computed by any worker, on
-- any machine, or before a restart, is reused by all. Keys are the daemons' cache keys (sha256
-- over the model's digest, the function and its parameters), so a result is reused only for the
-- same model and the same request. Only steadytext_worker (and superusers) may read or write
-- it: results are shared across roles only through the functions' outputs, never by browsing.
-- Bounded by steadytext.result_cache_max_entries and steadytext.result_cache_max_age, which the
-- workers enforce with steadytext_result_cache_evict() (no scheduler needed), one run per minute
-- across all of them (steadytext_result_cache_evict_due()).

CREATE TABLE steadytext_result_cache (
    cache_key  text PRIMARY KEY CHECK (cache_key ~ '^[0-9a-f]{64}$'),
    result     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE steadytext_result_cache IS
    'pg_steadytext results shared by every worker and daemon, by cache key (sha256 hex)';

-- eviction order: oldest first
CREATE INDEX steadytext_result_cache_age_idx ON steadytext_result_cache (created_at, cache_key);

REVOKE ALL ON steadytext_result_cache FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON steadytext_result_cache TO steadytext_worker;

-- The cached results among `keys` (those not cached are absent).
CREATE FUNCTION steadytext_result_cache_get(keys text[])
RETURNS TABLE (cache_key text, result text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.cache_key, c.result FROM @extschema@.steadytext_result_cache c
    WHERE c.cache_key = ANY ($1);
$$;

-- Stores results by key (keys[i] → results[i]); a key already cached keeps its result (equal
-- by determinism) and its age. Returns how many were new. Arrays of different lengths, or a key
-- that is not a sha256 digest in lower-case hex: 22023; a null array or result: 22004.
CREATE FUNCTION steadytext_result_cache_put(keys text[], results text[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    added integer;
BEGIN
    IF keys IS NULL OR results IS NULL THEN
        RAISE EXCEPTION 'keys and results must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF cardinality(keys) <> cardinality(results) THEN
        RAISE EXCEPTION 'keys and results must have the same length (% and %)',
            cardinality(keys), cardinality(results)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM unnest(keys) k WHERE k IS NULL OR k !~ '^[0-9a-f]{64}$') THEN
        RAISE EXCEPTION 'cache keys must be sha256 digests: 64 lower-case hex digits'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.steadytext_result_cache (cache_key, result)
    SELECT k, r FROM unnest(keys, results) AS u(k, r)
    ON CONFLICT (cache_key) DO NOTHING;
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END
$$;

-- Deletes up to batch_size entries older than max_age or beyond the newest max_entries, oldest
-- first, and returns how many. One caller at a time does the work (the others return 0 at
-- once), and each call is one short statement: workers call it repeatedly while it returns
-- batch_size. Negative max_entries or batch_size, or a negative max_age: 22023.
CREATE FUNCTION steadytext_result_cache_evict(max_entries bigint, max_age interval,
                                              batch_size integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    removed integer;
BEGIN
    IF max_entries < 0 OR batch_size < 0 OR max_age < interval '0' THEN
        RAISE EXCEPTION 'max_entries, max_age and batch_size must not be negative'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_entries IS NULL OR max_age IS NULL OR batch_size IS NULL THEN
        RAISE EXCEPTION 'max_entries, max_age and batch_size must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT pg_try_advisory_xact_lock('@extschema@.steadytext_result_cache'::regclass::oid::bigint) THEN
        RETURN 0;
    END IF;
    WITH doomed AS (
        (SELECT c.cache_key FROM @extschema@.steadytext_result_cache c
         WHERE c.created_at < now() - max_age
         ORDER BY c.created_at, c.cache_key
         LIMIT batch_size)
        UNION
        (SELECT c.cache_key FROM @extschema@.steadytext_result_cache c
         ORDER BY c.created_at DESC, c.cache_key DESC
         OFFSET max_entries LIMIT batch_size)
    )
    DELETE FROM @extschema@.steadytext_result_cache c
    USING (SELECT d.cache_key FROM doomed d LIMIT batch_size) d
    WHERE c.cache_key = d.cache_key;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END
$$;

-- When the last eviction run started, whichever daemon ran it: one row, so that however many
-- daemons share the cache, one run starts per interval (steadytext_result_cache_evict_due).
CREATE TABLE steadytext_result_cache_eviction (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_run_at timestamptz NOT NULL DEFAULT '-infinity'
);

COMMENT ON TABLE steadytext_result_cache_eviction IS
    'when the last eviction of steadytext_result_cache started (one row)';

INSERT INTO steadytext_result_cache_eviction DEFAULT VALUES;

REVOKE ALL ON steadytext_result_cache_eviction FROM PUBLIC;
GRANT SELECT, UPDATE ON steadytext_result_cache_eviction TO steadytext_worker;

-- Whether the caller is to run an eviction now: true for the first caller once `every` has
-- passed since the last run started (its transaction's start becomes the new one), false for
-- every other caller until `every` passes again. Concurrent callers queue on the one row, and
-- each sees the start the one before it recorded, so one of them gets true. A negative
-- interval: 22023; null: 22004.
CREATE FUNCTION steadytext_result_cache_evict_due(every interval)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF every IS NULL THEN
        RAISE EXCEPTION 'every must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF every < interval '0' THEN
        RAISE EXCEPTION 'every must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE @extschema@.steadytext_result_cache_eviction
    SET last_run_at = now()
    WHERE last_run_at <= now() - every;
    RETURN FOUND;
END
$$;

REVOKE ALL ON FUNCTION
    steadytext_result_cache_get(text[]),
    steadytext_result_cache_put(text[], text[]),
    steadytext_result_cache_evict(bigint, interval, integer),
    steadytext_result_cache_evict_due(interval)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    steadytext_result_cache_get(text[]),
    steadytext_result_cache_put(text[], text[]),
    steadytext_result_cache_evict(bigint, interval, integer),
    steadytext_result_cache_evict_due(interval)
TO steadytext_worker;
