-- Superuser code execution through search_path (CVE-2018-1058, CVE-2020-14350): a role with
-- CREATE on a schema the caller searches plants functions, operators, aggregates and tables named
-- like what the extension calls, in a schema first on search_path and in public (CREATE granted,
-- as on PostgreSQL 14 and older). Then every user function runs as an ordinary role and every
-- worker function as a superuser (the worker's default --db-user), with that search_path. No
-- trap may fire.
CREATE SCHEMA trap_log;
CREATE TABLE trap_log.fired (trap text, by_role name);
GRANT USAGE ON SCHEMA trap_log TO PUBLIC;
GRANT INSERT, SELECT ON trap_log.fired TO PUBLIC;
-- logs that `trap` ran (one row out, for views that join it)
CREATE FUNCTION trap_log.touch(trap text) RETURNS SETOF integer LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO trap_log.fired VALUES (trap, current_user);
    RETURN NEXT 1;
END
$$;
CREATE FUNCTION trap_log.count_step(n bigint) RETURNS bigint LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO trap_log.fired VALUES ('count(*)', current_user);
    RETURN n + 1;
END
$$;
GRANT CREATE ON SCHEMA public TO PUBLIC;
CREATE SCHEMA traps;
GRANT USAGE ON SCHEMA traps TO PUBLIC;
-- the names to trap: every function called in the extension's SQL functions, and those the
-- SQL of its Rust functions and of the worker calls
CREATE TABLE trap_log.names AS
SELECT DISTINCT m[1] AS name
FROM pg_proc p
JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_steadytext',
LATERAL regexp_matches(lower(p.prosrc), '([a-z_][a-z0-9_]*)\s*\(', 'g') AS m
UNION
SELECT unnest(ARRAY['count', 'unnest', 'now', 'make_interval', 'date_part', 'extract',
                    'array_position', 'has_table_privilege', 'jsonb_array_elements', 'to_regrole',
                    'quote_ident', 'min', 'avg', 'percentile_cont', 'gen_random_uuid', 'pg_notify',
                    'current_setting', 'set_config', 'json_build_object', 'format', 'power',
                    'least', 'cardinality', 'jsonb_typeof', 'pg_try_advisory_xact_lock', 'textout',
                    'uuid_in', 'timestamptz', 'timestamp', 'interval', 'text', 'uuid', 'regclass']);
-- a trap of the same signature for every pg_catalog function of those names, in both schemas
DO $$
DECLARE
    f record;
    s text;
    body text;
BEGIN
    FOR f IN
        SELECT p.proname, pg_get_function_arguments(p.oid) AS args,
               pg_get_function_result(p.oid) AS result, p.proretset,
               pg_get_function_result(p.oid) = 'void' OR p.proargmodes IS NOT NULL AS bare_return
        FROM pg_proc p
        WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
          AND p.proname IN (SELECT name FROM trap_log.names)
    LOOP
        body := format('BEGIN INSERT INTO trap_log.fired VALUES (%L, current_user); RETURN%s; END',
                       f.proname, CASE WHEN f.proretset OR f.bare_return THEN '' ELSE ' NULL' END);
        FOREACH s IN ARRAY ARRAY['traps', 'public'] LOOP
            BEGIN
                EXECUTE format('CREATE FUNCTION %I.%I(%s) RETURNS %s LANGUAGE plpgsql '
                               'SET search_path = pg_catalog AS %L',
                               s, f.proname, f.args, f.result, body);
            EXCEPTION WHEN OTHERS THEN
                NULL;  -- types plpgsql cannot take ("any", internal, cstring): listed below
            END;
        END LOOP;
    END LOOP;
END
$$;
-- names with no trap at all (their functions take types plpgsql functions cannot take)
SELECT n.name FROM trap_log.names n
WHERE EXISTS (SELECT FROM pg_proc p WHERE p.proname = n.name
              AND p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f')
  AND NOT EXISTS (SELECT FROM pg_proc p WHERE p.proname = n.name
                  AND p.pronamespace = 'traps'::regnamespace)
ORDER BY 1;
-- a trap for every binary operator between the types the extension's SQL compares
DO $$
DECLARE
    o record;
    s text;
BEGIN
    FOR o IN
        SELECT op.oid, op.oprname, format_type(op.oprleft, NULL) AS l,
               format_type(op.oprright, NULL) AS r, format_type(op.oprresult, NULL) AS res
        FROM pg_operator op
        WHERE op.oprnamespace = 'pg_catalog'::regnamespace AND op.oprkind = 'b'
          AND op.oprleft IN ('uuid'::regtype, 'text'::regtype, 'name'::regtype, 'oid'::regtype,
                            'integer'::regtype, 'bigint'::regtype, 'timestamptz'::regtype,
                            'interval'::regtype, 'jsonb'::regtype, 'boolean'::regtype,
                            'double precision'::regtype)
          AND op.oprright IN ('uuid'::regtype, 'text'::regtype, 'name'::regtype, 'oid'::regtype,
                             'integer'::regtype, 'bigint'::regtype, 'timestamptz'::regtype,
                             'interval'::regtype, 'jsonb'::regtype, 'boolean'::regtype,
                             'double precision'::regtype)
    LOOP
        FOREACH s IN ARRAY ARRAY['traps', 'public'] LOOP
            EXECUTE format('CREATE FUNCTION %I.op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql '
                           'SET search_path = pg_catalog AS %L', s, o.oid, o.l, o.r, o.res,
                           format('BEGIN INSERT INTO trap_log.fired VALUES (%L, current_user); '
                                  'RETURN NULL; END', 'operator ' || o.oprname));
            EXECUTE format('CREATE OPERATOR %I.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %I.op_%s)',
                           s, o.oprname, o.l, o.r, s, o.oid);
        END LOOP;
    END LOOP;
END
$$;
CREATE AGGREGATE traps.count(*) (SFUNC = trap_log.count_step, STYPE = bigint, INITCOND = '0');
CREATE AGGREGATE public.count(*) (SFUNC = trap_log.count_step, STYPE = bigint, INITCOND = '0');
-- tables read by the extension, and catalogs it looks things up in, as views that log a read
CREATE VIEW traps.steadytext_queue AS
    SELECT q.* FROM trap_log.touch('table steadytext_queue') t, public.steadytext_queue q;
CREATE VIEW traps.steadytext_workers AS
    SELECT w.* FROM trap_log.touch('table steadytext_workers') t, public.steadytext_workers w;
CREATE VIEW traps.steadytext_result_cache AS
    SELECT c.* FROM trap_log.touch('table steadytext_result_cache') t,
                    public.steadytext_result_cache c;
CREATE VIEW traps.steadytext_result_cache_eviction AS
    SELECT e.* FROM trap_log.touch('table steadytext_result_cache_eviction') t,
                    public.steadytext_result_cache_eviction e;
CREATE VIEW traps.steadytext_derivations AS
    SELECT d.* FROM trap_log.touch('table steadytext_derivations') t, public.steadytext_derivations d;
CREATE VIEW traps.steadytext_derivation_rows AS
    SELECT r.* FROM trap_log.touch('table steadytext_derivation_rows') t,
                    public.steadytext_derivation_rows r;
CREATE VIEW traps.pg_attribute AS
    SELECT a.attrelid, a.attname, a.attnum, a.atttypid, a.atttypmod, a.attisdropped, a.attgenerated
    FROM trap_log.touch('table pg_attribute') t, pg_catalog.pg_attribute a;
CREATE VIEW traps.pg_depend AS
    SELECT d.* FROM trap_log.touch('table pg_depend') t, pg_catalog.pg_depend d;
CREATE VIEW traps.pg_index AS
    SELECT i.* FROM trap_log.touch('table pg_index') t, pg_catalog.pg_index i;
CREATE VIEW traps.pg_extension AS
    SELECT e.* FROM trap_log.touch('table pg_extension') t, pg_catalog.pg_extension e;
CREATE VIEW traps.pg_namespace AS
    SELECT n.* FROM trap_log.touch('table pg_namespace') t, pg_catalog.pg_namespace n;
CREATE VIEW traps.pg_class AS
    SELECT c.* FROM trap_log.touch('table pg_class') t, pg_catalog.pg_class c;
CREATE VIEW traps.pg_roles AS
    SELECT r.* FROM trap_log.touch('table pg_roles') t, pg_catalog.pg_roles r;
GRANT SELECT ON ALL TABLES IN SCHEMA traps TO PUBLIC;
SELECT count(*) AS function_traps FROM pg_proc
WHERE pronamespace = 'traps'::regnamespace AND proname !~ '^op_';
SELECT count(*) AS operator_traps FROM pg_operator WHERE oprnamespace = 'traps'::regnamespace;
-- the traps work: an unqualified call under this search_path runs one
SET search_path = traps, pg_catalog, public;
SELECT now() IS NULL AS trapped_now, (SELECT count(*) FROM pg_extension) IS NOT NULL AS trapped_count;
SELECT (gen_random_uuid() = gen_random_uuid()) IS NULL AS trapped_uuid_eq;
RESET search_path;
SELECT DISTINCT trap, by_role FROM trap_log.fired ORDER BY 1;
TRUNCATE trap_log.fired;
SELECT repeat('a', 64) AS key \gset
TRUNCATE steadytext_queue, steadytext_workers;
SET track_functions = 'all';  -- to show below that every function of the extension ran
-- 1. an ordinary role enqueues one request of each kind
SET ROLE regress_alice;
SET search_path = traps, pg_catalog, public;
SELECT public.steadytext_generate_async('trap 1', 4) AS g \gset
SELECT public.steadytext_embed_async('trap 2') AS e \gset
SELECT public.steadytext_generate_json_async('trap 3', '{"type": "object"}', 8) AS j \gset
SELECT public.steadytext_generate_regex_async('trap 4', '[0-9]+', 4) AS r \gset
SELECT public.steadytext_generate_choice_async('trap 5', '{yes,no}', 4) AS c \gset
SELECT public.steadytext_generate_batch_async('{trap 6,trap 7}', 4) AS gb \gset
SELECT public.steadytext_embed_batch_async('{trap 8}') AS eb \gset
SELECT public.steadytext_rerank_async('trap 9', '{a,b}') AS k \gset
RESET ROLE;
-- 2. the worker's transitions, as a superuser
SELECT request_id IS NOT NULL AS claimed FROM public.steadytext_queue_claim('trap-worker', 20);
SELECT public.steadytext_worker_heartbeat('trap-worker', 'host', 1) AS extended;
SELECT public.steadytext_worker_heartbeat('trap-worker', 'host', 1, '300 s', 'running', 4,
                                          'generation: trap') AS extended;
SELECT public.steadytext_queue_complete(:'g', 'trap-worker', 'done') AS completed;
SELECT public.steadytext_queue_complete_many('trap-worker', ARRAY[:'e']::uuid[], '{"[0.5,0.5]"}')
       AS completed;
SELECT public.steadytext_queue_fail(:'j', 'trap-worker', 'no', false) AS failed;
SELECT public.steadytext_queue_retry(:'j') AS retried_by_an_operator;
SELECT public.steadytext_derivation_request_retried(:'j');
SELECT public.steadytext_queue_fail(:'r', 'trap-worker', 'again', true, '0 s') AS retried;
SELECT public.steadytext_queue_cancel(:'k') AS cancelled;
SELECT public.steadytext_queue_rescue_expired() AS rescued;
SELECT public.steadytext_queue_purge('100 years') AS purged;
SELECT public.steadytext_queue_may_retry(0, 3, 1) AS may_retry;
SELECT public.steadytext_queue_notify_completed(:'g', 'generate', 'completed');
SELECT public.steadytext_queue_wake_waiters();
SELECT public.steadytext_result_cache_put(ARRAY[:'key'], '{cached}') AS put;
SELECT result FROM public.steadytext_result_cache_get(ARRAY[:'key']);
SELECT public.steadytext_result_cache_evict(0, '1 day') AS evicted;
SELECT public.steadytext_result_cache_evict_due('1 minute') AS evict_due;
SELECT max_entries OPERATOR(pg_catalog.>) 0 AS limits FROM public.steadytext_result_cache_limits();
SELECT worker_id FROM public.steadytext_worker_status();
-- 3. the ordinary role follows, waits for, reads and cancels its requests; synchronous calls
SET ROLE regress_alice;
SELECT status FROM public.steadytext_check_async(:'g');
SELECT status FROM public.steadytext_check_async_batch(ARRAY[:'g', :'e']::uuid[]);
SELECT status FROM public.steadytext_check_async_batch(ARRAY[:'g', :'e']);
SELECT public.steadytext_get_async_result(:'g', 0) AS result;
SELECT public.steadytext_get_async_embedding(:'e', 0) AS embedding;
SELECT public.steadytext_cancel_async(:'c') AS cancelled;
SELECT function_name, status FROM public.steadytext_queue_stats();
SELECT mechanism IS NOT NULL AS stats FROM public.steadytext_wait_stats();
SELECT public.steadytext_version() IS NOT NULL AS version;
SELECT pg_catalog.length(public.steadytext_generate('trap', 2)) OPERATOR(pg_catalog.>) 0 AS generated;
SELECT pg_catalog.cardinality(public.steadytext_embed('trap')) AS dims;
SELECT public.steadytext_generate_json('trap', '{"type": "boolean"}', 8) OPERATOR(pg_catalog.=) ANY ('{true,false}') AS json;
SELECT public.steadytext_generate_regex('trap', '[0-9]', 4) OPERATOR(pg_catalog.~) '^[0-9]$' AS regex;
SELECT public.steadytext_generate_choice('trap', '{yes,no}', 4) OPERATOR(pg_catalog.=) ANY ('{yes,no}') AS choice;
SELECT document FROM public.steadytext_rerank('trap', '{a}');
RESET ROLE;
-- 4. derivations: an ordinary role declares them on its table and changes the table; a
-- superuser worker walks, completes and fails their requests
RESET search_path;
TRUNCATE steadytext_queue;
CREATE TABLE public.trap_docs (id int PRIMARY KEY, body text, embedding real[], summary text);
ALTER TABLE public.trap_docs OWNER TO regress_alice;
INSERT INTO public.trap_docs VALUES (1, 'one'), (2, 'two');
SET ROLE regress_alice;
SET search_path = traps, pg_catalog, public;
SELECT public.steadytext_derive('public.trap_docs', 'embedding', 'body') OPERATOR(pg_catalog.>) 0 AS declared;
SELECT public.steadytext_derive('public.trap_docs', 'summary', 'body', 'generate', '{"max_tokens": 4}')
       OPERATOR(pg_catalog.>) 0 AS declared;
SELECT public.steadytext_derive('public.trap_docs', 'trap_chunks', 'body', 'embed_chunks')
       OPERATOR(pg_catalog.>) 0 AS declared;
RESET ROLE;
SELECT public.steadytext_derivation_walk() AS walked;
SELECT public.steadytext_derivation_walk() AS walked;
SELECT public.steadytext_derivation_walk() AS walked;
SET ROLE regress_alice;
INSERT INTO public.trap_docs VALUES (3, 'three');
INSERT INTO public.trap_docs SELECT i, 'bulk' FROM generate_series(1001, 2002) AS i;
DELETE FROM public.trap_docs WHERE id OPERATOR(pg_catalog.>) 1000;
UPDATE public.trap_docs SET body = 'uno' WHERE id OPERATOR(pg_catalog.=) 1;
DELETE FROM public.trap_docs WHERE id OPERATOR(pg_catalog.=) 2;
SELECT public.steadytext_derivation_pause('public.trap_docs', 'summary');
SELECT public.steadytext_derivation_resume('public.trap_docs', 'summary');
SELECT public.steadytext_derivation_rederive('public.trap_docs', 'summary');
SELECT state FROM public.steadytext_derivation_status ORDER BY id;
RESET ROLE;
-- an operator's switch (the dashboard's)
SELECT public.steadytext_derivation_operate(id, 'pause') AS paused,
       public.steadytext_derivation_operate(id, 'resume') AS resumed
FROM public.steadytext_derivations WHERE destination OPERATOR(pg_catalog.=) 'summary';
SELECT public.steadytext_derivation_walk() AS walked FROM pg_catalog.generate_series(1, 4);
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 AS claimed
FROM public.steadytext_queue_claim('trap-worker', 20);
SELECT public.steadytext_queue_complete_many('trap-worker', pg_catalog.array_agg(request_id),
           pg_catalog.array_agg('[0.5]'::text)) AS completed
FROM public.steadytext_queue WHERE status OPERATOR(pg_catalog.=) 'processing'
  AND function_name OPERATOR(pg_catalog.=) 'embed';
SELECT public.steadytext_queue_complete_many('trap-worker', pg_catalog.array_agg(request_id),
           pg_catalog.array_agg('[{"text": "a chunk", "embedding": "[0.5]"}]'::text)) AS completed
FROM public.steadytext_queue WHERE status OPERATOR(pg_catalog.=) 'processing'
  AND function_name OPERATOR(pg_catalog.=) 'embed_chunks';
SELECT public.steadytext_queue_fail(request_id, 'trap-worker', 'no', false) AS failed
FROM public.steadytext_queue WHERE status OPERATOR(pg_catalog.=) 'processing';
SELECT id, chunk, chunk_text FROM public.trap_chunks ORDER BY id, chunk;
SET ROLE regress_alice;
SELECT id, embedding FROM public.trap_docs ORDER BY id;
SELECT public.steadytext_derivation_wait('public.trap_docs', 'embedding', 0) AS caught_up;
TRUNCATE public.trap_docs CASCADE;
ALTER TABLE public.trap_docs RENAME COLUMN summary TO abstract;
SELECT public.steadytext_derivation_drop('public.trap_docs', 'summary');
RESET ROLE;
DROP TABLE public.trap_docs CASCADE;
DROP TABLE public.trap_chunks;
RESET search_path;
-- no trap fired
SELECT trap, by_role FROM trap_log.fired ORDER BY 1;
-- and every function of the extension ran (counted by track_functions)
SELECT pg_stat_force_next_flush();
SELECT p.oid::regprocedure AS never_ran
FROM pg_proc p
JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_steadytext'
LEFT JOIN pg_stat_user_functions s ON s.funcid = p.oid
WHERE s.calls IS NULL
ORDER BY 1;
-- every function of the extension pins its search_path to pg_catalog, pg_temp
SELECT p.oid::regprocedure AS unpinned
FROM pg_proc p
JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_steadytext'
WHERE NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
ORDER BY 1;
-- and the few that set anything else say what (planning of the completion's statements)
SELECT p.oid::regprocedure AS function, p.proconfig AS settings
FROM pg_proc p
JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_steadytext'
WHERE cardinality(p.proconfig) > 1
ORDER BY 1;
