-- steadytext_queue_stats() and steadytext_worker_status(); the settings workers read.
TRUNCATE steadytext_queue, steadytext_workers;
SELECT * FROM steadytext_queue_stats();
SELECT steadytext_generate_async('a') AS a \gset
SELECT steadytext_generate_async('b') AS b \gset
SELECT steadytext_generate_async('c') AS c \gset
SELECT steadytext_generate_async('d') AS d \gset
SELECT count(*) FROM steadytext_queue_claim('w1', 3);
SELECT steadytext_queue_complete(:'a', 'w1', 'ok');
SELECT steadytext_queue_fail(:'b', 'w1', 'no', retryable => false);
SELECT steadytext_embed_async('e') IS NOT NULL AS queued;
SELECT steadytext_cancel_async(:'d');
-- by function and status; durations are start to finish, or the age of waiting requests
SELECT function_name, status, count, oldest_created_at IS NOT NULL AS has_oldest,
       oldest_age_seconds >= 0 AS has_age, avg_seconds >= 0 AS has_avg,
       p95_seconds >= 0 AS has_p95
FROM steadytext_queue_stats();
-- workers appear once they heartbeat; stale once their heartbeat is older than worker_timeout
SELECT * FROM steadytext_worker_status();
SELECT steadytext_worker_heartbeat('w1', 'host-a', 101);
SELECT steadytext_worker_heartbeat('w2', 'host-b', 202, status => 'stopping');
UPDATE steadytext_workers SET last_heartbeat = now() - interval '301 seconds' WHERE worker_id = 'w2';
SELECT worker_id, host, pid, status, started_at IS NOT NULL AS started, stale, processing
FROM steadytext_worker_status();
-- worker_timeout can only be changed in the configuration (sighup), not per session
SELECT sqlstate_of($$SET steadytext.worker_timeout = '10min'$$);
SHOW steadytext.worker_timeout;
-- the settings, their defaults and ranges (daemon_url is set by the test run to its daemon)
SELECT name, CASE WHEN name = 'steadytext.daemon_url' THEN '<test daemon>' ELSE setting END
       AS setting, unit, context, vartype, min_val, max_val, boot_val
FROM pg_settings WHERE name LIKE 'steadytext.%' ORDER BY name;
SHOW steadytext.worker_poll_interval;
