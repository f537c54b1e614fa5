-- Following requests: steadytext_check_async, steadytext_check_async_batch,
-- steadytext_get_async_result, steadytext_cancel_async. A superuser plays the worker here
-- (through the transition functions), since no worker runs during these tests.
TRUNCATE steadytext_queue, steadytext_workers;
SELECT steadytext_generate_async('done', priority => 3) AS done \gset
SELECT steadytext_embed_async('broken') AS broken \gset
SELECT steadytext_generate_async('stopped') AS stopped \gset
SELECT steadytext_generate_async('waiting') AS waiting \gset
SELECT steadytext_generate_async('running') AS running \gset
-- a worker claims everything and finishes some of it
SELECT count(*) AS claimed FROM steadytext_queue_claim('w1', 10);
SELECT steadytext_queue_complete(:'done', 'w1', 'the result');
SELECT steadytext_queue_fail(:'broken', 'w1', 'model exploded', retryable => false);
SELECT steadytext_cancel_async(:'stopped') AS cancelled;
-- cancelling again, or cancelling a finished request, reports false
SELECT steadytext_cancel_async(:'stopped') AS again, steadytext_cancel_async(:'done') AS finished;
-- :waiting goes back to pending (a retry), :running stays processing
SELECT steadytext_queue_fail(:'waiting', 'w1', 'transient', backoff => '0');
-- check_async: one row, timestamps present exactly when they should be
SELECT v.label, c.status, c.result, c.error, c.priority,
       c.created_at IS NOT NULL AS created, c.started_at IS NOT NULL AS started,
       c.completed_at IS NOT NULL AS finished, c.completed_at >= c.created_at AS ordered
FROM (VALUES ('done', :'done'::uuid), ('broken', :'broken'), ('stopped', :'stopped'),
             ('waiting', :'waiting'), ('running', :'running')) AS v(label, id),
     steadytext_check_async(v.id) c
ORDER BY v.label;
-- timestamps are timestamp (without time zone) in the session's zone
SELECT created_at = (SELECT created_at::timestamp FROM steadytext_queue WHERE request_id = :'done')
FROM steadytext_check_async(:'done');
-- named argument
SELECT status FROM steadytext_check_async(request_id => :'done');
-- check_async_batch: input order, unknown ids reported as not_found
SELECT b.request_id = ANY (ARRAY[:'done', :'broken', :'running']::uuid[]) AS known,
       b.status, b.result, b.error, b.created_at IS NOT NULL AS created,
       b.completed_at IS NOT NULL AS finished
FROM steadytext_check_async_batch(ARRAY[:'running', :'done',
        '00000000-0000-0000-0000-000000000000', :'broken']::uuid[]) b;
SELECT count(*) FROM steadytext_check_async_batch(request_ids => ARRAY[:'done']::uuid[]);
-- ... and with the ids as text (string literals, as in the documentation): the same rows
SELECT b.request_id = ANY (ARRAY[:'done', :'broken']::uuid[]) AS known, b.status
FROM steadytext_check_async_batch(ARRAY[:'done', '00000000-0000-0000-0000-000000000000',
                                        :'broken']) b;
SELECT count(*) FROM steadytext_check_async_batch(request_ids => ARRAY[:'done']::text[]);
-- every text form uuid input accepts (case, braces, hyphens after any four digits)
SELECT t.label, b.request_id = t.form::uuid AS same, b.status
FROM (VALUES ('upper case', upper(:'done')), ('braces', '{' || :'done' || '}'),
             ('no hyphens', replace(:'done', '-', '')),
             ('hyphens every 4', regexp_replace(replace(:'done', '-', ''), '(....)(?!$)', '\1-', 'g')))
     AS t(label, form),
     steadytext_check_async_batch(ARRAY[t.form]) b;
-- get_async_result
SELECT steadytext_get_async_result(:'done');
SELECT steadytext_get_async_result(request_id => :'done', timeout_seconds => 0);
SELECT label, sqlstate_of(format('SELECT steadytext_get_async_result(%L, %s)', id, t)) AS outcome
FROM (VALUES ('broken', :'broken'::uuid, 5), ('stopped', :'stopped', 5),
             ('waiting', :'waiting', 0), ('running', :'running', 0), ('running', :'running', 1))
     AS v(label, id, t);
-- statement_timeout (and query cancel) interrupt a wait
SET statement_timeout = '100ms';
SELECT sqlstate_of(format('SELECT steadytext_get_async_result(%L, 60)', :'running'));
RESET statement_timeout;
-- a request queued by the current, uncommitted transaction fails at once instead of timing out
BEGIN;
SELECT steadytext_generate_async('mine') AS mine \gset
SELECT sqlstate_of(format('SELECT steadytext_get_async_result(%L, 60)', :'mine'));
-- ... and so does one it changed (here: claimed) but has not committed
SELECT count(*) AS claimed FROM steadytext_queue_claim('w2', 10);
SELECT sqlstate_of(format('SELECT steadytext_get_async_result(%L, 60)', :'waiting'));
-- ... while a finished one is returned
SELECT steadytext_queue_complete(:'mine', 'w2', 'own result');
SELECT steadytext_get_async_result(:'mine', 60);
ROLLBACK;
-- a REPEATABLE READ snapshot would never see the result: error, not a silent wait
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT sqlstate_of(format('SELECT steadytext_get_async_result(%L, 60)', :'running'));
SELECT steadytext_get_async_result(:'done', 60);
COMMIT;
-- the other functions are volatile too (results change over time)
SELECT proname, provolatile FROM pg_proc
WHERE proname IN ('steadytext_check_async', 'steadytext_check_async_batch',
                  'steadytext_get_async_result', 'steadytext_cancel_async')
ORDER BY proname;
-- embeddings: the result is pgvector's text form; steadytext_get_async_embedding returns real[]
SELECT steadytext_embed_async('vector me') AS vec \gset
SELECT steadytext_embed_async('garbled') AS garbled \gset
SELECT count(*) AS claimed FROM steadytext_queue_claim('w3', 10);
SELECT steadytext_queue_complete(:'vec', 'w3', '[0.5,-1,0.25]');
SELECT steadytext_queue_complete(:'garbled', 'w3', '0.5;1');
SELECT steadytext_get_async_result(:'vec');
SELECT steadytext_get_async_embedding(:'vec'), pg_typeof(steadytext_get_async_embedding(:'vec', 0));
SELECT label, sqlstate_of(format('SELECT steadytext_get_async_embedding(%s)', args)) AS outcome
FROM (VALUES ('generate request', quote_literal(:'done')),
             ('malformed result', quote_literal(:'garbled')),
             ('failed request', quote_literal(:'broken')),
             ('unfinished request', quote_literal(:'waiting') || ', 0'),
             ('NULL id', 'NULL'),
             ('NULL timeout', quote_literal(:'vec') || ', NULL'),
             ('negative timeout', quote_literal(:'vec') || ', -1'),
             ('unknown id', '''00000000-0000-0000-0000-000000000000''')) AS v(label, args);
-- without shared_preload_libraries waiters poll (5 ms doubling to 500 ms) and nothing counts
-- completions; steadytext_wait_stats() describes this session's most recent wait
SELECT sqlstate_of(format('SELECT steadytext_get_async_result(%L, 1)', :'waiting'));
SELECT mechanism, completion_wakeups, timer_wakeups > 1 AS polled, completions
FROM steadytext_wait_stats();
