-- Bounded growth: steadytext_queue_purge deletes finished requests older than the retention, in
-- batches, oldest first; the ids of purged requests are unknown afterwards.
TRUNCATE steadytext_queue, steadytext_workers;
-- the retention setting a worker follows (its --queue-retention overrides it); it exists once
-- the library is loaded
SELECT steadytext_version() IS NOT NULL AS loaded;
SELECT name, setting, unit, context, min_val, max_val, boot_val
FROM pg_settings WHERE name = 'steadytext.queue_retention';
SHOW steadytext.queue_retention;
-- six requests: two completed 10 days ago, one failed 9 days ago, one cancelled 8 days ago,
-- one completed just now, one still pending
SELECT steadytext_generate_async('p' || i) FROM generate_series(1, 6) AS i \g /dev/null
SELECT count(*) AS claimed FROM steadytext_queue_claim('w1', 5);
SELECT steadytext_queue_complete(request_id, 'w1', 'r') AS completed FROM steadytext_queue
WHERE parameters->>'prompt' IN ('p1', 'p2', 'p5') ORDER BY id;
SELECT steadytext_queue_fail(request_id, 'w1', 'boom', false) AS failed FROM steadytext_queue
WHERE parameters->>'prompt' = 'p3';
SELECT steadytext_cancel_async(request_id) AS cancelled FROM steadytext_queue
WHERE parameters->>'prompt' = 'p4';
UPDATE steadytext_queue SET started_at = now() - interval '11 days',
    completed_at = CASE WHEN completed_at IS NOT NULL THEN now() - CASE parameters->>'prompt'
        WHEN 'p1' THEN interval '10 days' WHEN 'p2' THEN interval '10 days'
        WHEN 'p4' THEN interval '8 days' END END,
    failed_at = CASE WHEN failed_at IS NOT NULL THEN now() - interval '9 days' END
WHERE parameters->>'prompt' IN ('p1', 'p2', 'p3', 'p4');
SELECT parameters->>'prompt' AS prompt, request_id AS p1 FROM steadytext_queue
WHERE parameters->>'prompt' = 'p1' \gset
SELECT parameters->>'prompt' AS prompt, status FROM steadytext_queue ORDER BY id;
-- purging uses the finished-requests index, oldest first
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT id FROM steadytext_queue
WHERE status IN ('completed', 'failed', 'cancelled')
  AND coalesce(completed_at, failed_at) < now() - interval '7 days'
ORDER BY coalesce(completed_at, failed_at) LIMIT 500;
RESET enable_seqscan;
-- a batch of 2 takes the two oldest (completed 10 days ago), the next one the failed and the
-- cancelled one; the recent and the pending requests stay
SELECT steadytext_queue_purge('7 days', 2) AS purged;
SELECT parameters->>'prompt' AS prompt, status FROM steadytext_queue ORDER BY id;
SELECT steadytext_queue_purge('7 days', 2) AS purged;
SELECT steadytext_queue_purge('7 days') AS purged;
SELECT parameters->>'prompt' AS prompt, status FROM steadytext_queue ORDER BY id;
-- a shorter retention reaches the recent one only once it finished longer ago than that
SELECT steadytext_queue_purge('1 hour') AS purged;
-- a purged id is unknown, and the errors say it may have been purged
SELECT stmt, sqlstate_of(format(stmt, :'p1')) AS outcome FROM (VALUES
    ('SELECT steadytext_check_async(%L)'),
    ('SELECT steadytext_get_async_result(%L, 0)'),
    ('SELECT steadytext_cancel_async(%L)')
) AS t(stmt);
SELECT status FROM steadytext_check_async_batch(ARRAY[:'p1']::uuid[]);
-- invalid arguments
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_queue_purge(NULL)$$),
    ($$SELECT steadytext_queue_purge('1 day', NULL)$$),
    ($$SELECT steadytext_queue_purge('-1 day')$$),
    ($$SELECT steadytext_queue_purge('1 day', 0)$$),
    ($$SELECT steadytext_queue_purge('1 day', 10001)$$)
) AS t(stmt);
-- only workers (and superusers) may purge; a worker purges every role's requests
SET ROLE regress_alice;
SELECT sqlstate_of($$SELECT steadytext_queue_purge('0 seconds')$$);
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_queue_purge('0 seconds') AS purged;
RESET ROLE;
SELECT parameters->>'prompt' AS prompt, status FROM steadytext_queue ORDER BY id;
-- the queue table is vacuumed after 1% of its rows changed, not the default 20%
SELECT unnest(reloptions) AS option FROM pg_class WHERE relname = 'steadytext_queue';
TRUNCATE steadytext_queue;
