-- The result cache every worker shares: get, put, evict, the bounds the settings give, and who
-- may touch it.
TRUNCATE steadytext_result_cache;
-- the configured bounds (defaults), and their settings
SELECT * FROM steadytext_result_cache_limits();
SET steadytext.result_cache_max_entries = 2;
SET steadytext.result_cache_max_age = '1h';
SELECT * FROM steadytext_result_cache_limits();
RESET steadytext.result_cache_max_entries;
RESET steadytext.result_cache_max_age;
-- put returns how many keys were new; a key already cached keeps its first result
SELECT steadytext_result_cache_put(ARRAY[repeat('a', 64), repeat('b', 64)], ARRAY['first a', 'first b']);
SELECT steadytext_result_cache_put(ARRAY[repeat('b', 64), repeat('c', 64)], ARRAY['second b', 'first c']);
SELECT steadytext_result_cache_put('{}', '{}');
SELECT left(cache_key, 4) AS key, result
FROM steadytext_result_cache_get(ARRAY[repeat('a', 64), repeat('b', 64), repeat('c', 64), repeat('d', 64)])
ORDER BY 1;
-- malformed calls
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_result_cache_put(ARRAY['x'], ARRAY['r'])$$),
    ($$SELECT steadytext_result_cache_put(ARRAY[repeat('e', 64)], ARRAY['r', 's'])$$),
    ($$SELECT steadytext_result_cache_put(ARRAY[repeat('e', 64)], NULL)$$),
    ($$SELECT steadytext_result_cache_put(ARRAY[repeat('e', 64)], ARRAY[NULL])$$),
    ($$SELECT steadytext_result_cache_put(ARRAY[upper(repeat('e', 64))], ARRAY['r'])$$),
    ($$SELECT steadytext_result_cache_evict(-1, '1 day')$$),
    ($$SELECT steadytext_result_cache_evict(10, '-1 day')$$),
    ($$SELECT steadytext_result_cache_evict(10, '1 day', -1)$$),
    ($$SELECT steadytext_result_cache_evict(NULL, '1 day')$$),
    ($$SELECT steadytext_result_cache_evict_due('-1 second')$$),
    ($$SELECT steadytext_result_cache_evict_due(NULL)$$),
    ($$SET steadytext.result_cache_max_entries = -1$$),
    ($$SET steadytext.result_cache_max_age = 0$$)
) AS t(stmt);
-- eviction: by age (the two oldest are a day old), then beyond the newest max_entries, in
-- batches, oldest first
UPDATE steadytext_result_cache SET created_at = now() - interval '1 day'
WHERE cache_key IN (repeat('a', 64), repeat('b', 64));
SELECT steadytext_result_cache_evict(100, '1 hour');
SELECT left(cache_key, 4) AS key FROM steadytext_result_cache ORDER BY 1;
SELECT steadytext_result_cache_put(
    ARRAY(SELECT lpad(to_hex(i), 64, '0') FROM generate_series(1, 5) i),
    ARRAY(SELECT 'r' || i FROM generate_series(1, 5) i));
UPDATE steadytext_result_cache SET created_at = now() - (cache_key = repeat('c', 64))::int * interval '1 minute';
SELECT steadytext_result_cache_evict(2, '1 day', 3);
SELECT steadytext_result_cache_evict(2, '1 day', 3);
SELECT steadytext_result_cache_evict(2, '1 day', 3);
SELECT count(*), bool_and(cache_key <> repeat('c', 64)) AS oldest_gone FROM steadytext_result_cache;
SELECT steadytext_result_cache_evict(0, '1 day');
SELECT count(*) FROM steadytext_result_cache;
-- one eviction run per interval, whoever asks: the first caller is due (no run yet), the next
-- is not until the interval has passed since that run started
SELECT last_run_at = '-infinity' AS never_run FROM steadytext_result_cache_eviction;
SELECT steadytext_result_cache_evict_due('1 minute') AS first_due;
SELECT steadytext_result_cache_evict_due('1 minute') AS second_due;
SELECT now() - last_run_at < interval '1 minute' AS just_started FROM steadytext_result_cache_eviction;
UPDATE steadytext_result_cache_eviction SET last_run_at = now() - interval '61 seconds';
SELECT steadytext_result_cache_evict_due('1 minute') AS due_after_a_minute;
SELECT steadytext_result_cache_evict_due('0') AS due_with_no_interval;
-- only steadytext_worker (and superusers) read and write it
SET ROLE regress_alice;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT * FROM steadytext_result_cache$$),
    ($$SELECT * FROM steadytext_result_cache_get(ARRAY[repeat('a', 64)])$$),
    ($$SELECT steadytext_result_cache_put(ARRAY[repeat('a', 64)], ARRAY['forged'])$$),
    ($$SELECT steadytext_result_cache_evict(0, '1 day')$$),
    ($$SELECT steadytext_result_cache_evict_due('1 minute')$$),
    ($$SELECT * FROM steadytext_result_cache_eviction$$),
    ($$SELECT count(*) FROM steadytext_result_cache_limits()$$)
) AS t(stmt);
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_result_cache_put(ARRAY[repeat('f', 64)], ARRAY['by a worker']);
SELECT left(cache_key, 4) AS key, result FROM steadytext_result_cache_get(ARRAY[repeat('f', 64)]);
SELECT steadytext_result_cache_evict(0, '1 day');
SELECT steadytext_result_cache_evict_due('0') AS worker_due;
RESET ROLE;
