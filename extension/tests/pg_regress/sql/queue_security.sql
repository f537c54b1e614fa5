-- Row-level security: a role sees and cancels only its own requests; steadytext_worker processes
-- all of them; only steadytext_worker may run the worker transitions.
TRUNCATE steadytext_queue, steadytext_workers;
SET ROLE regress_alice;
SELECT steadytext_generate_async('alice 1') AS a1 \gset
SELECT steadytext_generate_async('alice 2') AS a2 \gset
SELECT parameters->>'prompt' AS prompt, owner FROM steadytext_queue ORDER BY id;
RESET ROLE;
SET ROLE regress_bob;
SELECT steadytext_generate_async('bob 1') AS b1 \gset
SELECT parameters->>'prompt' AS prompt, owner FROM steadytext_queue ORDER BY id;
-- alice's requests do not exist for bob
SELECT stmt, sqlstate_of(format(stmt, :'a1')) AS outcome FROM (VALUES
    ($$SELECT steadytext_check_async(%L)$$),
    ($$SELECT steadytext_cancel_async(%L)$$),
    ($$SELECT steadytext_get_async_result(%L, 0)$$)
) AS t(stmt);
SELECT status FROM steadytext_check_async_batch(ARRAY[:'a1', :'b1']::uuid[]);
-- bob cannot act as a worker
SELECT stmt, sqlstate_of(format(stmt, :'b1')) AS outcome FROM (VALUES
    ($$SELECT steadytext_queue_claim('bob', 10)$$),
    ($$SELECT steadytext_queue_complete(%L, 'bob', 'forged')$$),
    ($$SELECT steadytext_queue_fail(%L, 'bob', 'forged')$$),
    ($$SELECT steadytext_worker_heartbeat('bob', 'h', 1)$$),
    ($$SELECT steadytext_queue_rescue_expired()$$),
    ($$SELECT steadytext_queue_retry(%L)$$)
) AS t(stmt);
-- nor write the tables directly: no INSERT, UPDATE or DELETE at all (enqueue and cancel are
-- functions)
SELECT stmt, sqlstate_of(format(stmt, :'b1')) AS outcome FROM (VALUES
    ($$UPDATE steadytext_queue SET status = 'completed', result = 'x', completed_at = now() WHERE request_id = %L$$),
    ($$UPDATE steadytext_queue SET status = 'processing' WHERE request_id = %L$$),
    ($$UPDATE steadytext_queue SET status = 'pending' WHERE request_id = %L$$),
    ($$INSERT INTO steadytext_queue (function_name, parameters, owner) VALUES ('generate', '{}', 'regress_alice')$$),
    ($$DELETE FROM steadytext_queue WHERE request_id = %L$$),
    ($$INSERT INTO steadytext_workers (worker_id, host, pid) VALUES ('bob', 'h', 1)$$)
) AS t(stmt);
-- the monitoring functions show bob's own requests; the workers are not his to see
SELECT status, count FROM steadytext_queue_stats() WHERE count > 0;
SELECT sqlstate_of('SELECT steadytext_worker_status()') AS outcome;
RESET ROLE;
-- a member of steadytext_worker sees and processes every role's requests
SET ROLE regress_worker;
SELECT parameters->>'prompt' AS prompt, owner FROM steadytext_queue_claim('rw', 10);
SELECT steadytext_queue_complete(:'a1', 'rw', 'done for alice') AS completed;
SELECT steadytext_worker_heartbeat('rw', 'h', 1) AS extended;
RESET ROLE;
SET ROLE regress_alice;
SELECT steadytext_get_async_result(:'a1', 0);
SELECT steadytext_cancel_async(:'a2') AS cancelled;
RESET ROLE;
SET ROLE regress_worker;
SELECT worker_id, processing FROM steadytext_worker_status();
SELECT steadytext_queue_complete(:'a2', 'rw', 'too late') AS completed;
RESET ROLE;
-- who may execute what; SECURITY DEFINER only where needed, always with a pinned search_path
SELECT p.proname, p.prosecdef AS definer,
       has_function_privilege('regress_bob', p.oid, 'EXECUTE') AS any_role,
       has_function_privilege('regress_worker', p.oid, 'EXECUTE') AS worker,
       p.proconfig IS NOT NULL AS pinned_search_path
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_steadytext'
ORDER BY p.proname;
SELECT polname, polcmd, polroles::regrole[] FROM pg_policy
WHERE polrelid = 'steadytext_queue'::regclass ORDER BY polname;
SELECT relrowsecurity FROM pg_class WHERE oid = 'steadytext_queue'::regclass;
