-- The steadytext_*_async functions queue a request and return its id at once.
TRUNCATE steadytext_queue, steadytext_workers;
-- the SQL signatures, exactly as documented (argument names, defaults, result types)
\x on
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_steadytext'
WHERE p.proname LIKE 'steadytext\_%\_async%' OR p.proname LIKE 'steadytext\_%async\_%'
   OR p.proname IN ('steadytext_queue_stats', 'steadytext_worker_status')
ORDER BY p.proname, arguments;
\x off
-- one call per function, with defaults and with named arguments
SELECT steadytext_generate_async('Write a haiku') AS g1 \gset
SELECT steadytext_generate_async(prompt => 'Write a limerick', max_tokens => 64, use_cache => false,
                                 seed => 7, priority => 5) AS g2 \gset
SELECT steadytext_embed_async('hello world') AS e1 \gset
SELECT steadytext_embed_async(text_input => 'hi', use_cache => false, priority => -3) AS e2 \gset
SELECT steadytext_generate_json_async('A person', '{"type": "object"}') AS j1 \gset
SELECT steadytext_generate_json_async(prompt => 'Anything', schema => 'true', max_tokens => 10,
                                      priority => 1000) AS j2 \gset
SELECT steadytext_generate_regex_async('Phone:', '\d{3}-\d{4}') AS r1 \gset
SELECT steadytext_generate_choice_async('Sentiment of "great"', ARRAY['positive', 'negative']) AS c1 \gset
SELECT steadytext_rerank_async('capital of France', ARRAY['Paris is the capital', 'Berlin']) AS k1 \gset
SELECT steadytext_rerank_async(query => 'q', documents => ARRAY['d'], task => 'custom task',
                               use_cache => false, seed => 1, priority => -1000) AS k2 \gset
-- every request is a pending row owned by the caller, parameters under the SQL argument names
SELECT v.label, q.function_name, q.parameters, q.priority, q.status, q.owner = current_user::text::regrole AS mine,
       q.retry_count, q.max_retries, q.worker_id, q.lease_expires_at, q.result, q.error,
       q.started_at, q.completed_at, q.failed_at, q.next_attempt_at = q.created_at AS due_at_once
FROM (VALUES ('g1', :'g1'::uuid), ('g2', :'g2'), ('e1', :'e1'), ('e2', :'e2'), ('j1', :'j1'),
             ('j2', :'j2'), ('r1', :'r1'), ('c1', :'c1'), ('k1', :'k1'), ('k2', :'k2'))
     AS v(label, id)
JOIN steadytext_queue q ON q.request_id = v.id
ORDER BY v.label;
-- batches: one request per element, ids in the order of the input
SELECT steadytext_generate_batch_async(ARRAY['first', 'second', 'third'], max_tokens => 8) AS gb \gset
SELECT cardinality(:'gb'::uuid[]) AS ids,
       (SELECT count(DISTINCT x) FROM unnest(:'gb'::uuid[]) x) AS distinct_ids;
SELECT b.n, q.function_name, q.parameters
FROM unnest(:'gb'::uuid[]) WITH ORDINALITY AS b(id, n)
JOIN steadytext_queue q ON q.request_id = b.id ORDER BY b.n;
SELECT steadytext_embed_batch_async(texts => ARRAY['a', 'b'], use_cache => false, priority => 2) AS eb \gset
SELECT b.n, q.function_name, q.parameters, q.priority
FROM unnest(:'eb'::uuid[]) WITH ORDINALITY AS b(id, n)
JOIN steadytext_queue q ON q.request_id = b.id ORDER BY b.n;
-- max_retries is taken from steadytext.max_retries when the request is queued
SET steadytext.max_retries = 0;
SELECT steadytext_generate_async('no retries') AS nr \gset
SELECT max_retries FROM steadytext_queue WHERE request_id = :'nr';
RESET steadytext.max_retries;
-- enqueueing does not wait for anything: the user's view right away
SELECT status, count(*) FROM steadytext_queue GROUP BY status ORDER BY status;
-- a rolled-back enqueue leaves nothing behind
BEGIN;
SELECT steadytext_generate_async('rolled back') IS NOT NULL AS queued;
ROLLBACK;
SELECT count(*) AS rolled_back_rows FROM steadytext_queue WHERE parameters->>'prompt' = 'rolled back';
-- volatility: enqueueing is volatile and never runs in parallel workers
SELECT DISTINCT provolatile, proparallel FROM pg_proc
WHERE proname IN ('steadytext_generate_async', 'steadytext_embed_async',
                  'steadytext_generate_batch_async', 'steadytext_rerank_async');
