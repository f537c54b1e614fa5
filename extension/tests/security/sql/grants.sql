-- The grants match the API: ordinary roles reach the queue only through its functions. Replays
-- the review's direct INSERT past the queue limit and argument checks, the completed_at set to
-- 'infinity' (never purged), and calls of the internal functions.
TRUNCATE steadytext_queue, steadytext_workers;
SELECT steadytext_worker_heartbeat('grants-worker', 'db-host-1', 4242) AS extended;
SET steadytext.max_queue_size = 4;
SET ROLE regress_alice;
SELECT steadytext_generate_async('alice 1', 8) AS a1 \gset
SELECT steadytext_generate_async('alice 2', 8) AS a2 \gset
-- writing the queue or the workers table directly: refused
SELECT stmt, sqlstate_of(format(stmt, :'a1')) AS outcome FROM (VALUES
    ($$INSERT INTO steadytext_queue (function_name, parameters, max_retries)
       SELECT 'generate', '{"prompt": "x", "max_tokens": 999999}', 100 FROM generate_series(1, 3)$$),
    ($$INSERT INTO steadytext_queue (function_name, parameters, owner)
       VALUES ('generate', '{"prompt": "x"}', 'regress_bob')$$),
    ($$UPDATE steadytext_queue SET completed_at = 'infinity' WHERE request_id = %L$$),
    ($$UPDATE steadytext_queue SET status = 'cancelled', completed_at = now() WHERE request_id = %L$$),
    ($$UPDATE steadytext_queue SET priority = 1000 WHERE request_id = %L$$),
    ($$DELETE FROM steadytext_queue WHERE request_id = %L$$),
    ($$INSERT INTO steadytext_workers (worker_id, host, pid) VALUES ('alice', 'h', 1)$$),
    ($$SELECT host, pid FROM steadytext_workers$$),
    ($$SELECT * FROM steadytext_result_cache$$)
) AS t(stmt);
-- the internal and worker functions: refused
SELECT stmt, sqlstate_of(format(stmt, :'a1')) AS outcome FROM (VALUES
    ($$SELECT steadytext_queue_wake_waiters()$$),
    ($$SELECT steadytext_queue_notify_completed(%L, 'generate', 'cancelled')$$),
    ($$SELECT steadytext_queue_cancel(%L)$$),
    ($$SELECT steadytext_queue_may_retry(0, 1, 1)$$),
    ($$SELECT steadytext_queue_claim('alice')$$),
    ($$SELECT steadytext_queue_complete(%L, 'alice', 'forged')$$),
    ($$SELECT steadytext_queue_purge('0 s')$$),
    ($$SELECT steadytext_result_cache_get('{}')$$),
    ($$SELECT steadytext_worker_status()$$)
) AS t(stmt);
-- the API still does what it promises: the limit holds for everyone, cancel works
SELECT steadytext_generate_async('alice 3', 8) IS NOT NULL AS enqueued;
RESET ROLE;
SET ROLE regress_bob;
SELECT steadytext_generate_async('bob 1', 8) IS NOT NULL AS enqueued;
SELECT sqlstate_of($$SELECT steadytext_generate_async('bob 2', 8)$$) AS fifth;
RESET ROLE;
SET ROLE regress_alice;
SELECT steadytext_cancel_async(:'a1') AS cancelled;
SELECT status, completed_at IS NOT NULL AS finished FROM steadytext_check_async(:'a1');
SELECT parameters->>'prompt' AS prompt, status, owner, max_retries FROM steadytext_queue ORDER BY id;
RESET ROLE;
-- who may see the workers: steadytext_worker and pg_monitor members, superusers
SET ROLE regress_monitor;
SELECT worker_id, host, pid FROM steadytext_worker_status();
RESET ROLE;
SET ROLE regress_worker;
SELECT worker_id, host, pid FROM steadytext_worker_status();
RESET ROLE;
RESET steadytext.max_queue_size;
-- every privilege on the extension's tables, and who may execute its functions
SELECT c.relname, a.grantee::regrole AS grantee, a.privilege_type
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.relname IN ('steadytext_queue', 'steadytext_workers', 'steadytext_result_cache')
  AND a.grantee <> c.relowner
ORDER BY 1, 2, 3;
SELECT count(*) AS column_grants FROM pg_attribute
WHERE attrelid IN ('steadytext_queue'::regclass, 'steadytext_workers'::regclass) AND attacl IS NOT NULL;
SELECT p.proname, p.prosecdef AS definer,
       has_function_privilege('regress_bob', p.oid, 'EXECUTE') AS any_role,
       has_function_privilege('regress_worker', p.oid, 'EXECUTE') AS worker
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_steadytext'
ORDER BY p.proname, p.oid::regprocedure::text;
