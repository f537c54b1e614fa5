-- The requests one statement enqueues are written to steadytext_queue together, when that
-- statement has run (src/enqueue_buffer.rs); everything after it sees them, rolled-back work
-- leaves none of them behind.
TRUNCATE steadytext_queue;
SET steadytext.max_queue_size = 100000;
-- one statement of 2500 calls (the buffer is also written every 1000 rows): every row is there,
-- once, pending, and in call order
SELECT count(steadytext_embed_async('row ' || i)) AS enqueued FROM generate_series(1, 2500) i;
SELECT count(*) AS rows, count(DISTINCT request_id) AS ids, bool_and(status = 'pending') AS pending
FROM steadytext_queue;
SELECT count(*) AS out_of_order
FROM (SELECT parameters->>'text_input' AS text, row_number() OVER (ORDER BY id) AS n
      FROM steadytext_queue) s
WHERE text <> 'row ' || n;
-- ids are version-4 uuids, as gen_random_uuid() makes them
SELECT count(*) FILTER (WHERE request_id::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
       AS v4_ids
FROM steadytext_queue;
TRUNCATE steadytext_queue;
-- the extension's own functions see a request of the statement that is still running
SELECT (steadytext_check_async(steadytext_generate_async('same statement'))).status;
SELECT steadytext_cancel_async(steadytext_generate_async('cancel in the same statement'));
SELECT (steadytext_check_async_batch(ARRAY[steadytext_embed_async('batch check')])).status;
-- an error later in the statement leaves none of its requests
SELECT steadytext_embed_async('before the error ' || i) IS NOT NULL, 1 / (3 - i)
FROM generate_series(1, 3) i;
SELECT count(*) AS after_error FROM steadytext_queue
WHERE parameters->>'text_input' LIKE 'before the error%';
-- a rolled-back savepoint takes its requests, and only its requests, with it
BEGIN;
SELECT steadytext_embed_async('kept 1') IS NOT NULL AS queued;
SAVEPOINT s;
SELECT count(steadytext_embed_async('dropped ' || i)) FROM generate_series(1, 5) i;
ROLLBACK TO s;
SELECT steadytext_embed_async('kept 2') IS NOT NULL AS queued;
COMMIT;
SELECT parameters->>'text_input' AS text FROM steadytext_queue
WHERE parameters->>'text_input' ~ '^(kept|dropped)' ORDER BY id;
-- PL/pgSQL: an exception block that fails drops its requests (PERFORM and assignment alike);
-- an assignment in a DO block is written at once, so the next query of the block finds it
DO $$
DECLARE
    req uuid;
BEGIN
    BEGIN
        PERFORM steadytext_embed_async('failed block, perform');
        req := steadytext_embed_async('failed block, assignment');
        RAISE EXCEPTION 'boom';
    EXCEPTION WHEN others THEN
        NULL;
    END;
    req := steadytext_embed_async('do block');
    IF NOT EXISTS (SELECT FROM steadytext_queue WHERE request_id = req) THEN
        RAISE EXCEPTION 'the request of the assignment is not in the queue';
    END IF;
END
$$;
SELECT parameters->>'text_input' AS text FROM steadytext_queue
WHERE parameters->>'text_input' ~ '^(failed block|do block)' ORDER BY id;
-- PERFORM is a statement of its own: its request is written when it ends
CREATE FUNCTION enqueue_then_count() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM steadytext_embed_async('perform');
    RETURN (SELECT count(*) FROM steadytext_queue WHERE parameters->>'text_input' = 'perform');
END
$$;
SELECT enqueue_then_count();
DROP FUNCTION enqueue_then_count();
-- a trigger that enqueues per row of a bulk INSERT: one request per row, each id where it belongs
CREATE TABLE docs (body text, job uuid);
CREATE FUNCTION docs_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.job := steadytext_embed_async(NEW.body);
    RETURN NEW;
END
$$;
CREATE TRIGGER docs_enqueue BEFORE INSERT ON docs FOR EACH ROW EXECUTE FUNCTION docs_enqueue();
INSERT INTO docs SELECT 'doc ' || i FROM generate_series(1, 300) i;
SELECT count(*) AS docs_with_their_request
FROM docs d JOIN steadytext_queue q ON q.request_id = d.job AND q.parameters->>'text_input' = d.body;
DROP TABLE docs;
DROP FUNCTION docs_enqueue();
-- a cursor's requests are written as each MOVE or FETCH ends
BEGIN;
DECLARE c CURSOR FOR SELECT steadytext_embed_async('cursor ' || i) FROM generate_series(1, 10) i;
MOVE 4 IN c;
SELECT count(*) AS after_move FROM steadytext_queue WHERE parameters->>'text_input' LIKE 'cursor %';
MOVE ALL IN c;
SELECT count(*) AS after_move_all FROM steadytext_queue WHERE parameters->>'text_input' LIKE 'cursor %';
COMMIT;
-- a call outside any statement's executor (a CALL argument) is written at once
CREATE PROCEDURE look_for(req uuid) LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM steadytext_queue WHERE request_id = req) THEN
        RAISE EXCEPTION 'the request of the CALL argument is not in the queue';
    END IF;
END
$$;
CALL look_for(steadytext_embed_async('call argument'));
DROP PROCEDURE look_for(uuid);
-- a request made before an exception block and written inside it (by a function that looks at
-- the queue) survives the block's failure: it is written again when the statement has run
CREATE FUNCTION made_before_the_block() RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    req uuid;
BEGIN
    req := steadytext_embed_async('made before the block');
    BEGIN
        PERFORM steadytext_check_async(req);
        RAISE EXCEPTION 'boom';
    EXCEPTION WHEN others THEN
        NULL;
    END;
    RETURN req;
END
$$;
SELECT made_before_the_block() AS req \gset
SELECT parameters->>'text_input' AS text, status FROM steadytext_queue WHERE request_id = :'req';
DROP FUNCTION made_before_the_block();
-- a request belongs to the user the call ran as, even when it is written after a SECURITY
-- DEFINER function returned: an assignment's request waits for the caller's statement
CREATE FUNCTION enqueue_as_definer(t text) RETURNS uuid LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_catalog AS $$
DECLARE
    req uuid;
BEGIN
    req := steadytext_embed_async(t);
    RETURN req;
END
$$;
ALTER FUNCTION enqueue_as_definer(text) OWNER TO regress_alice;
SET ROLE regress_bob;
SELECT count(enqueue_as_definer('definer ' || i)) AS enqueued FROM generate_series(1, 3) i;
SELECT enqueue_as_definer('definer mixed') IS NOT NULL AS definer,
       steadytext_embed_async('bob mixed') IS NOT NULL AS bob;
RESET ROLE;
SELECT parameters->>'text_input' AS text, owner FROM steadytext_queue
WHERE parameters->>'text_input' ~ '^(definer|bob)' ORDER BY id;
DROP FUNCTION enqueue_as_definer(text);
-- errors inside statements reach the client whole: the executor hooks let them pass untouched
CREATE TABLE once (k int PRIMARY KEY);
CREATE FUNCTION insert_twice() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO once VALUES (1), (1);
END
$$;
SELECT insert_twice();
CREATE FUNCTION duplicate_of() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    constraint_name text;
    table_name text;
BEGIN
    INSERT INTO once VALUES (1), (1);
    RETURN 'no error';
EXCEPTION WHEN unique_violation THEN
    GET STACKED DIAGNOSTICS constraint_name = CONSTRAINT_NAME, table_name = TABLE_NAME;
    RETURN table_name || '.' || constraint_name;
END
$$;
SELECT duplicate_of();
DROP FUNCTION duplicate_of();
DROP FUNCTION insert_twice();
DROP TABLE once;
RESET steadytext.max_queue_size;
TRUNCATE steadytext_queue;
-- the library loaded inside a savepoint that then fails mid-statement: rolling back to it resets
-- the executor nesting count (the savepoint began before the library counted anything), so a
-- later call outside any executor is still written at once
\c -
BEGIN;
SAVEPOINT before_load;
SELECT steadytext_version() IS NOT NULL AS loaded;
SELECT 1 / (random() * 0)::int AS fails_while_running;
ROLLBACK TO SAVEPOINT before_load;
DO $$ DECLARE id uuid; BEGIN id := steadytext_generate_async('after the rollback', 8); END $$;
SELECT count(*) AS seen_by_the_next_statement FROM steadytext_queue
WHERE parameters->>'prompt' = 'after the rollback';
COMMIT;
TRUNCATE steadytext_queue;
