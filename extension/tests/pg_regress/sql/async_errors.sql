-- Every bad input of the asynchronous functions, with its SQLSTATE:
-- 22004 NULL where a value is required, 22023 invalid parameter, 2201B invalid regex,
-- 53400 queue full, P0002 unknown request.
TRUNCATE steadytext_queue, steadytext_workers;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    -- prompt
    ($$SELECT steadytext_generate_async(NULL)$$),
    ($$SELECT steadytext_generate_async('')$$),
    ($$SELECT steadytext_generate_async(NULL::text, 10)$$),
    -- max_tokens: 1 and the limit are fine, 0, -1, NULL and limit + 1 are not
    ($$SELECT steadytext_generate_async('x', 1)$$),
    ($$SELECT steadytext_generate_async('x', 4096)$$),
    ($$SELECT steadytext_generate_async('x', 0)$$),
    ($$SELECT steadytext_generate_async('x', -1)$$),
    ($$SELECT steadytext_generate_async('x', 4097)$$),
    ($$SELECT steadytext_generate_async('x', NULL)$$),
    -- use_cache, seed
    ($$SELECT steadytext_generate_async('x', use_cache => NULL)$$),
    ($$SELECT steadytext_generate_async('x', seed => NULL)$$),
    -- priority: -1000..1000
    ($$SELECT steadytext_generate_async('x', priority => -1000)$$),
    ($$SELECT steadytext_generate_async('x', priority => 1000)$$),
    ($$SELECT steadytext_generate_async('x', priority => 1001)$$),
    ($$SELECT steadytext_generate_async('x', priority => -1001)$$),
    ($$SELECT steadytext_generate_async('x', priority => NULL)$$),
    ($$SELECT steadytext_embed_async('x', priority => 5000)$$),
    ($$SELECT steadytext_rerank_async('q', ARRAY['d'], priority => 5000)$$),
    ($$SELECT steadytext_embed_batch_async(ARRAY['a'], priority => -5000)$$),
    -- embed
    ($$SELECT steadytext_embed_async(NULL)$$),
    ($$SELECT steadytext_embed_async('')$$),
    ($$SELECT steadytext_embed_async('x', NULL)$$),
    -- generate_json: schema must be a JSON Schema (object or boolean)
    ($$SELECT steadytext_generate_json_async('x', NULL)$$),
    ($$SELECT steadytext_generate_json_async('x', '[]')$$),
    ($$SELECT steadytext_generate_json_async('x', '"object"')$$),
    ($$SELECT steadytext_generate_json_async('x', '42')$$),
    ($$SELECT steadytext_generate_json_async('x', 'null')$$),
    ($$SELECT steadytext_generate_json_async('', '{}')$$),
    ($$SELECT steadytext_generate_json_async('x', '{}', 0)$$),
    ($$SELECT steadytext_generate_json_async('x', '{not json}')$$),
    -- ... and well-formed (every keyword's value of the right shape, nested): a malformed one
    -- is refused at enqueue, never left to fail in a worker
    ($$SELECT steadytext_generate_json_async('x', '{"type": 12}')$$),
    ($$SELECT steadytext_generate_json_async('x', '{"type": ["string", "strng"]}')$$),
    ($$SELECT steadytext_generate_json_async('x', '{"properties": {"a": 5}}')$$),
    ($$SELECT steadytext_generate_json_async('x', '{"properties": {"a/b": {"enum": []}}}')$$),
    ($$SELECT steadytext_generate_json_async('x', '{"$defs": {"n": {"type": "number", "multipleOf": 0}}}')$$),
    ($$SELECT steadytext_generate_json_async('x', '{"type": "string", "minLength": 5, "maxLength": 2}')$$),
    ($$SELECT steadytext_generate_json_async('x', '{"patternProperties": {"[a-": {}}}')$$),
    ($$SELECT steadytext_generate_json_async('x', '{"oneOf": [{"type": "string"}, {"required": ["a", 1]}]}')$$),
    -- generate_regex
    ($$SELECT steadytext_generate_regex_async('x', NULL)$$),
    ($$SELECT steadytext_generate_regex_async('x', '')$$),
    ($$SELECT steadytext_generate_regex_async('x', '(ab')$$),
    ($$SELECT steadytext_generate_regex_async('x', '[z-a]')$$),
    ($$SELECT steadytext_generate_regex_async('x', 'a{2,1}')$$),
    ($$SELECT steadytext_generate_regex_async('x', '*')$$),
    ($$SELECT steadytext_generate_regex_async('x', '[0-9]+', 4097)$$),
    ($$SELECT steadytext_generate_regex_async(NULL, '[0-9]+')$$),
    -- generate_choice
    ($$SELECT steadytext_generate_choice_async('x', NULL)$$),
    ($$SELECT steadytext_generate_choice_async('x', ARRAY[]::text[])$$),
    ($$SELECT steadytext_generate_choice_async('x', ARRAY['a', NULL])$$),
    ($$SELECT steadytext_generate_choice_async('x', ARRAY['a', ''])$$),
    ($$SELECT steadytext_generate_choice_async('x', ARRAY['a', 'b', 'a'])$$),
    ($$SELECT steadytext_generate_choice_async('', ARRAY['a'])$$),
    ($$SELECT steadytext_generate_choice_async('x', ARRAY['a'], -1)$$),
    -- generate_batch
    ($$SELECT steadytext_generate_batch_async(NULL)$$),
    ($$SELECT steadytext_generate_batch_async(ARRAY[]::text[])$$),
    ($$SELECT steadytext_generate_batch_async(ARRAY['a', NULL, 'c'])$$),
    ($$SELECT steadytext_generate_batch_async(ARRAY['a', 'b', ''])$$),
    ($$SELECT steadytext_generate_batch_async(ARRAY['a'], 0)$$),
    ($$SELECT steadytext_generate_batch_async(ARRAY['a'], priority => 2000)$$),
    -- embed_batch
    ($$SELECT steadytext_embed_batch_async(NULL)$$),
    ($$SELECT steadytext_embed_batch_async(ARRAY[]::text[])$$),
    ($$SELECT steadytext_embed_batch_async(ARRAY[NULL]::text[])$$),
    ($$SELECT steadytext_embed_batch_async(ARRAY[''])$$),
    -- rerank
    ($$SELECT steadytext_rerank_async(NULL, ARRAY['d'])$$),
    ($$SELECT steadytext_rerank_async('', ARRAY['d'])$$),
    ($$SELECT steadytext_rerank_async('q', NULL)$$),
    ($$SELECT steadytext_rerank_async('q', ARRAY[]::text[])$$),
    ($$SELECT steadytext_rerank_async('q', ARRAY['d', NULL])$$),
    ($$SELECT steadytext_rerank_async('q', ARRAY['d', ''])$$),
    ($$SELECT steadytext_rerank_async('q', ARRAY['d'], NULL)$$),
    ($$SELECT steadytext_rerank_async('q', ARRAY['d'], seed => NULL)$$),
    -- following requests: NULL, unknown ids, empty lists, negative timeouts
    ($$SELECT steadytext_check_async(NULL)$$),
    ($$SELECT steadytext_check_async('00000000-0000-0000-0000-000000000000')$$),
    -- check_async_batch takes uuid[] or text[]; an untyped NULL or literal matches both (42725)
    ($$SELECT steadytext_check_async_batch(NULL)$$),
    ($$SELECT steadytext_check_async_batch(NULL::uuid[])$$),
    ($$SELECT steadytext_check_async_batch(ARRAY[]::uuid[])$$),
    ($$SELECT steadytext_check_async_batch(ARRAY[NULL]::uuid[])$$),
    ($$SELECT steadytext_check_async_batch(NULL::text[])$$),
    ($$SELECT steadytext_check_async_batch(ARRAY[]::text[])$$),
    ($$SELECT steadytext_check_async_batch(ARRAY['00000000-0000-0000-0000-000000000000', NULL])$$),
    ($$SELECT steadytext_check_async_batch(ARRAY['00000000-0000-0000-0000-000000000000', 'abc'])$$),
    ($$SELECT steadytext_check_async_batch(ARRAY['00000000-0000-0000-0000-00000000000'])$$),
    ($$SELECT steadytext_check_async_batch(ARRAY[' 00000000-0000-0000-0000-000000000000'])$$),
    ($$SELECT steadytext_check_async_batch('{00000000-0000-0000-0000-000000000000}')$$),
    ($$SELECT steadytext_cancel_async(NULL)$$),
    ($$SELECT steadytext_cancel_async('00000000-0000-0000-0000-000000000000')$$),
    ($$SELECT steadytext_get_async_result(NULL)$$),
    ($$SELECT steadytext_get_async_result('00000000-0000-0000-0000-000000000000')$$),
    ($$SELECT steadytext_get_async_result('00000000-0000-0000-0000-000000000000', 0)$$),
    ($$SELECT steadytext_get_async_result('00000000-0000-0000-0000-000000000000', -1)$$),
    ($$SELECT steadytext_get_async_result('00000000-0000-0000-0000-000000000000', NULL)$$)
) AS t(stmt);
-- the limit is named in the messages
SELECT sqlstate_of($$SELECT steadytext_generate_batch_async(ARRAY['a'], 100000)$$);
-- the error table queued exactly the calls that returned 'ok'
SELECT count(*) AS queued FROM steadytext_queue;
-- queue full: steadytext.max_queue_size counts pending and processing requests of every role
TRUNCATE steadytext_queue;
SET steadytext.max_queue_size = 3;
SELECT steadytext_generate_async('one') IS NOT NULL AS queued;
SELECT cardinality(steadytext_embed_batch_async(ARRAY['two', 'three'])) AS queued;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_generate_async('four')$$),
    ($$SELECT steadytext_embed_async('four')$$),
    ($$SELECT steadytext_generate_json_async('four', '{}')$$),
    ($$SELECT steadytext_generate_regex_async('four', 'a')$$),
    ($$SELECT steadytext_generate_choice_async('four', ARRAY['a'])$$),
    ($$SELECT steadytext_rerank_async('four', ARRAY['a'])$$),
    ($$SELECT steadytext_generate_batch_async(ARRAY['four'])$$),
    ($$SELECT steadytext_embed_batch_async(ARRAY['four'])$$)
) AS t(stmt);
-- finished requests do not count: a cancelled one makes room
SELECT steadytext_cancel_async(request_id) FROM steadytext_queue
WHERE parameters->>'prompt' = 'one';
SELECT steadytext_generate_async('four') IS NOT NULL AS queued;
-- a batch that would overflow queues nothing
SET steadytext.max_queue_size = 5;
SELECT sqlstate_of($$SELECT steadytext_generate_batch_async(ARRAY['a', 'b', 'c'])$$);
SELECT count(*) AS queued FROM steadytext_queue WHERE status = 'pending';
-- one statement enqueueing row by row counts its own rows: it may fill the queue, not overflow it
TRUNCATE steadytext_queue;
SET steadytext.max_queue_size = 3;
SELECT sqlstate_of($$SELECT count(steadytext_generate_async('r' || i)) FROM generate_series(1, 4) AS i$$);
SELECT count(*) AS queued FROM steadytext_queue;
SELECT count(steadytext_generate_async('r' || i)) AS queued FROM generate_series(1, 3) AS i;
SELECT sqlstate_of($$SELECT steadytext_generate_async('r4')$$);
RESET steadytext.max_queue_size;
-- only superusers may change the limit
SET ROLE regress_alice;
SELECT sqlstate_of($$SET steadytext.max_queue_size = 1000000$$);
RESET ROLE;
