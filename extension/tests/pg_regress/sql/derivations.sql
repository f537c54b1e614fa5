-- Derivations: a column kept equal to an AI function of an expression over its row. Declared by
-- regress_alice on her table; regress_worker plays the worker (claims and completes with made-up
-- results, which the write-back converts for the destination).
TRUNCATE steadytext_queue;
CREATE SCHEMA regress_derive;
GRANT USAGE ON SCHEMA regress_derive TO PUBLIC;
CREATE TABLE regress_derive.docs (
    id int PRIMARY KEY, title text, body text, embedding real[], summary text, facts jsonb,
    label text, len int GENERATED ALWAYS AS (length(body)) STORED);
ALTER TABLE regress_derive.docs OWNER TO regress_alice;
CREATE TABLE regress_derive.no_key (body text, embedding real[]);
ALTER TABLE regress_derive.no_key OWNER TO regress_alice;
CREATE FUNCTION regress_derive.shout(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper(t) $$;
CREATE FUNCTION regress_derive.noisy(t text) RETURNS text LANGUAGE sql VOLATILE AS $$ SELECT t || random() $$;
SET ROLE regress_alice;
INSERT INTO regress_derive.docs (id, title, body) VALUES (1, 'one', 'first body'), (2, 'two', 'second body');

-- bad declarations: each a clear error with its SQLSTATE, and nothing created
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_derive('regress_derive.no_key', 'embedding', 'body')$$),
    ($$SELECT steadytext_derive('regress_derive.missing', 'embedding', 'body')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'nope', 'body')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'bodyy')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body ||')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body) AS x FROM pg_class; SELECT (1')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body)::text AS steadytext_input FROM regress_derive.docs; DROP TABLE regress_derive.docs; SELECT (1')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body AS x')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body FROM pg_class')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body, title')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body; SELECT 1')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body /* open')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', '  ')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', NULL)$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'regress_derive.noisy(body)')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body', 'summarize')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'summary', 'body', 'embed')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body', 'generate')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'facts', 'body', 'generate')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'len', 'body', 'generate')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'id', 'body', 'generate')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'summary', 'summary || body', 'generate')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'summary', 'body', 'generate', '{"max_tokens": 0}')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'summary', 'body', 'generate', '{"max_tokenz": 5}')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'summary', 'body', 'generate', '{"priority": 5000}')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'summary', 'body', 'generate', '[]')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'facts', 'body', 'generate_json')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'facts', 'body', 'generate_json', '{"schema": 5}')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'label', 'body', 'generate_regex', '{"pattern": "[a-"}')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'label', 'body', 'generate_choice', '{"choices": []}')$$)
) AS t(stmt);
SELECT count(*) AS derivations FROM steadytext_derivations;

-- regress_bob may read nothing of alice's table: he cannot derive from it (nor into it)
RESET ROLE;
SET ROLE regress_bob;
SELECT sqlstate_of($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'body')$$) AS outcome;
RESET ROLE;
GRANT SELECT (id, title), UPDATE (summary) ON regress_derive.docs TO regress_bob;
SET ROLE regress_bob;
SELECT sqlstate_of($$SELECT steadytext_derive('regress_derive.docs', 'summary', 'body', 'generate')$$) AS outcome;
SELECT sqlstate_of($$SELECT steadytext_derive('regress_derive.docs', 'embedding', 'title')$$) AS outcome;
RESET ROLE;
REVOKE ALL ON regress_derive.docs FROM regress_bob;

-- alice declares an embedding, a summary, facts as JSON and a label
SET ROLE regress_alice;
SELECT steadytext_derive('regress_derive.docs', 'embedding', $$title || ': ' || body$$) > 0 AS declared;
SELECT steadytext_derive('regress_derive.docs', 'summary', $$'Summarise: ' || regress_derive.shout(body) -- loud$$,
                         'generate', '{"max_tokens": 16, "priority": 5}') > 0 AS declared;
SELECT steadytext_derive('regress_derive.docs', 'facts', 'body', 'generate_json',
                         '{"schema": {"type": "object"}, "max_tokens": 32}') > 0 AS declared;
SELECT steadytext_derive('regress_derive.docs', 'label', 'body', 'generate_choice',
                         '{"choices": ["short", "long"]}') > 0 AS declared;
SELECT sqlstate_of($$SELECT steadytext_derive('regress_derive.docs', 'summary', 'body', 'generate')$$) AS outcome;
SELECT destination, destination_type, input, input_columns, key_columns, function_name, parameters,
       priority, backfill_priority, declarer, state, walking
FROM steadytext_derivations ORDER BY id;
SELECT tgname FROM pg_trigger WHERE tgrelid = 'regress_derive.docs'::regclass ORDER BY tgname;
-- the rows already there wait for a walk: nothing is enqueued by the declaration itself
SELECT count(*) AS enqueued FROM steadytext_queue;
RESET ROLE;

-- a worker walks the source in batches (here of 1 row), at the backfill priority
SET ROLE regress_worker;
SELECT steadytext_derivation_walk(1) AS walked;
SELECT steadytext_derivation_walk(1) AS walked;
SELECT sqlstate_of('SELECT steadytext_derivation_walk(0)') AS outcome;
RESET ROLE;
SELECT steadytext_derivation_walk(10000) IS NOT NULL AS walked_on FROM generate_series(1, 8);
SELECT steadytext_derivation_walk() AS nothing_walking;
SELECT d.destination, q.function_name, q.parameters, q.priority, q.owner, q.source_key, q.status
FROM steadytext_queue q JOIN steadytext_derivations d ON d.id = q.derivation_id
ORDER BY d.id, q.source_key;

-- changes: an INSERT records its rows, an UPDATE of an input column records them, an UPDATE
-- of other columns does not; the statement enqueues nothing itself
SET ROLE regress_alice;
INSERT INTO regress_derive.docs (id, title, body) VALUES (3, 'three', 'third body');
UPDATE regress_derive.docs SET title = 'ONE' WHERE id = 1;
UPDATE regress_derive.docs SET label = 'by hand' WHERE id = 2;
SELECT d.destination, c.source_key FROM steadytext_derivation_changes c
JOIN steadytext_derivations d ON d.id = c.derivation_id ORDER BY d.id, c.source_key;
SELECT destination, rows_total, rows_pending, lag > interval '0' AS lagging
FROM steadytext_derivation_status ORDER BY id;
SELECT count(*) AS enqueued_by_the_statements FROM steadytext_queue WHERE status = 'pending'
AND priority >= 0;
RESET ROLE;
-- a worker's next walk (woken by the statements' NOTIFY) takes the changes, one derivation per
-- call: it enqueues a request for each row whose input is new or changed, at the derivation's
-- priority, and cancels the request a change supersedes
SET ROLE regress_worker;
SELECT steadytext_derivation_walk() AS took FROM generate_series(1, 5);
RESET ROLE;
SET ROLE regress_alice;
SELECT count(*) AS changes_left FROM steadytext_derivation_changes;
SELECT d.destination, q.parameters ->> coalesce(nullif(q.function_name, 'embed'), 'text_input') AS input,
       q.priority, q.source_key, q.status
FROM steadytext_queue q JOIN steadytext_derivations d ON d.id = q.derivation_id
WHERE d.destination IN ('embedding', 'summary')
ORDER BY q.id;
RESET ROLE;
SELECT parameters ->> 'prompt' AS prompt FROM steadytext_queue WHERE function_name = 'generate' ORDER BY id LIMIT 1;

-- the worker completes everything pending with made-up results
SET ROLE regress_worker;
SELECT count(*) AS claimed FROM steadytext_queue_claim('regress-w', 100);
SELECT steadytext_queue_complete_many('regress-w', array_agg(request_id ORDER BY id),
           array_agg(CASE function_name WHEN 'embed' THEN '[' || (source_key ->> 'id') || ',0.5]'
                                        WHEN 'generate_json' THEN '{"n": ' || (source_key ->> 'id') || '}'
                                        WHEN 'generate_choice' THEN 'short'
                                        ELSE 'summary of ' || (source_key ->> 'id') END ORDER BY id))
       AS written
FROM steadytext_queue WHERE status = 'processing';
RESET ROLE;
SELECT id, embedding, summary, facts, label FROM regress_derive.docs ORDER BY id;
SELECT destination, rows_total, rows_in_sync, rows_pending, rows_failed, last_error, lag, backfilling
FROM steadytext_derivation_status ORDER BY id;
-- waiting for a derivation to catch up
SELECT steadytext_derivation_wait('regress_derive.docs', 'embedding', 0) AS caught_up;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_derivation_wait('regress_derive.docs', 'title')$$),
    ($$SELECT steadytext_derivation_wait('regress_derive.docs', 'embedding', -1)$$),
    ($$SELECT steadytext_derivation_wait('regress_derive.docs', NULL)$$)
) AS t(stmt);

-- a result computed from an input the row no longer has is dropped
SET ROLE regress_alice;
UPDATE regress_derive.docs SET body = 'second body, edited' WHERE id = 2;
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_derivation_walk() AS took FROM generate_series(1, 5);
RESET ROLE;
SET ROLE regress_worker;
SELECT count(*) AS claimed FROM steadytext_queue_claim('regress-w', 100);
RESET ROLE;
SET ROLE regress_alice;
UPDATE regress_derive.docs SET body = 'second body, edited twice' WHERE id = 2;
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_derivation_walk() AS took FROM generate_series(1, 5);
RESET ROLE;
SET ROLE regress_worker;
-- the claimed ones were cancelled when the second edit was taken: nothing is written
SELECT steadytext_queue_complete_many('regress-w', array_agg(request_id), array_agg('stale'::text))
       AS written
FROM steadytext_queue WHERE worker_id = 'regress-w' AND source_key = '{"id": 2}' AND status = 'cancelled';
-- and a result for a row whose input changed behind the triggers' back is not written either
SELECT count(*) AS claimed FROM steadytext_queue_claim('regress-w', 100);
RESET ROLE;
ALTER TABLE regress_derive.docs DISABLE TRIGGER USER;
UPDATE regress_derive.docs SET body = 'changed with the triggers off' WHERE id = 2;
ALTER TABLE regress_derive.docs ENABLE TRIGGER USER;
SET ROLE regress_worker;
SELECT steadytext_queue_complete_many('regress-w', array_agg(request_id ORDER BY id),
           array_agg(CASE function_name WHEN 'embed' THEN '[9]' WHEN 'generate_json' THEN '{}'
                                        WHEN 'generate_choice' THEN 'long' ELSE 'stale' END ORDER BY id))
       AS written
FROM steadytext_queue WHERE status = 'processing';
RESET ROLE;
SELECT id, embedding, summary, facts, label FROM regress_derive.docs WHERE id = 2;
SELECT destination, rows_in_sync, rows_pending FROM steadytext_derivation_status ORDER BY id;
SELECT sqlstate_of($$SELECT steadytext_derivation_wait('regress_derive.docs', 'embedding', 0)$$) AS outcome;
-- in the transaction that changed the table, waiting is an error at once, not a timeout
BEGIN;
UPDATE regress_derive.docs SET title = 'two, again' WHERE id = 2;
SELECT sqlstate_of($$SELECT steadytext_derivation_wait('regress_derive.docs', 'embedding', 60)$$) AS outcome;
ROLLBACK;

-- a request that fails for good leaves the destination as it was and shows its error
SET ROLE regress_alice;
INSERT INTO regress_derive.docs (id, title, body) VALUES (4, 'four', 'fourth body');
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_derivation_walk() AS took FROM generate_series(1, 5);
RESET ROLE;
SET ROLE regress_worker;
SELECT count(*) AS claimed FROM steadytext_queue_claim('regress-w', 100);
SELECT steadytext_queue_fail(request_id, 'regress-w', 'model exploded on ' || (source_key ->> 'id'), retryable => false)
FROM steadytext_queue WHERE status = 'processing' AND function_name = 'generate';
SELECT steadytext_queue_complete_many('regress-w', array_agg(request_id), array_agg(
           CASE function_name WHEN 'embed' THEN '[4]' WHEN 'generate_json' THEN '{}' ELSE 'long' END))
       AS written
FROM steadytext_queue WHERE status = 'processing';
RESET ROLE;
SELECT id, embedding, summary FROM regress_derive.docs WHERE id = 4;
SET ROLE regress_alice;
SELECT source_key, error FROM steadytext_derivation_rows WHERE error IS NOT NULL;
SELECT destination, rows_failed, last_error FROM steadytext_derivation_status ORDER BY id;
-- an operator retries it (the dashboard's retry): the row waits for that request again, and
-- its result is written
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_queue_retry(request_id) AS retried
FROM steadytext_queue WHERE status = 'failed' AND source_key = '{"id": 4}';
SELECT count(*) AS claimed FROM steadytext_queue_claim('regress-w', 100);
SELECT steadytext_queue_complete_many('regress-w', array_agg(request_id),
                                      array_agg('a retried summary'::text)) AS written
FROM steadytext_queue WHERE status = 'processing';
RESET ROLE;
SELECT id, summary FROM regress_derive.docs WHERE id = 4;
SET ROLE regress_alice;
SELECT count(*) AS rows_with_errors FROM steadytext_derivation_rows WHERE error IS NOT NULL;
-- a NULL input gives a NULL destination, with no request
UPDATE regress_derive.docs SET body = NULL WHERE id = 1;
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_derivation_walk() AS took FROM generate_series(1, 5);
RESET ROLE;
SET ROLE regress_alice;
SELECT id, embedding, summary, facts, label FROM regress_derive.docs WHERE id = 1;
SELECT count(*) AS enqueued_for_row_1 FROM steadytext_queue WHERE source_key = '{"id": 1}' AND status = 'pending';

-- DELETE and TRUNCATE cancel what is pending and forget the rows
DELETE FROM regress_derive.docs WHERE id = 3;
SELECT count(*) AS rows_of_3 FROM steadytext_derivation_rows WHERE source_key = '{"id": 3}';
SELECT count(*) AS pending_for_3 FROM steadytext_queue WHERE source_key = '{"id": 3}' AND status = 'pending';

-- pause: nothing is enqueued, changes are recorded (and not taken); resume takes them, at the
-- derivation's priority, and walks the rest
SELECT steadytext_derivation_pause('regress_derive.docs', 'summary');
UPDATE regress_derive.docs SET body = 'fourth body, paused' WHERE id = 4;
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_derivation_walk() AS took FROM generate_series(1, 5);
RESET ROLE;
SET ROLE regress_alice;
SELECT state, rows_pending FROM steadytext_derivation_status WHERE destination = 'summary';
SELECT count(*) AS summaries_pending FROM steadytext_queue q JOIN steadytext_derivations d ON d.id = q.derivation_id
WHERE d.destination = 'summary' AND q.status = 'pending';
SELECT steadytext_derivation_resume('regress_derive.docs', 'summary');
RESET ROLE;
SELECT steadytext_derivation_walk() AS walked FROM generate_series(1, 4);
SELECT q.source_key, q.priority FROM steadytext_queue q JOIN steadytext_derivations d ON d.id = q.derivation_id
WHERE d.destination = 'summary' AND q.status = 'pending' ORDER BY q.source_key;
-- rederive: every row again
SET ROLE regress_alice;
SELECT steadytext_derivation_rederive('regress_derive.docs', 'label');
RESET ROLE;
SELECT steadytext_derivation_walk() AS walked FROM generate_series(1, 4);
SELECT q.source_key FROM steadytext_queue q JOIN steadytext_derivations d ON d.id = q.derivation_id
WHERE d.destination = 'label' AND q.status = 'pending' ORDER BY q.source_key;
SET ROLE regress_alice;
UPDATE regress_derive.docs SET title = 'four, once more' WHERE id = 4;
TRUNCATE regress_derive.docs;
SELECT count(*) AS rows_left FROM steadytext_derivation_rows;
SELECT count(*) AS changes_left FROM steadytext_derivation_changes;
SELECT count(*) AS pending_left FROM steadytext_queue WHERE derivation_id IS NOT NULL AND status = 'pending';

-- management: only the declarer (or a member of its role, or a superuser)
RESET ROLE;
SET ROLE regress_bob;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_derivation_pause('regress_derive.docs', 'summary')$$),
    ($$SELECT steadytext_derivation_drop('regress_derive.docs', 'summary')$$),
    ($$SELECT steadytext_derivation_resume('regress_derive.docs', 'title')$$),
    ($$SELECT steadytext_derivation_walk()$$),
    ($$SELECT steadytext_derivation_write_back('{}')$$),
    ($$SELECT steadytext_derivation_run_as('regress_alice'::regrole, 'SELECT ''{}''::jsonb', NULL)$$),
    ($$SELECT steadytext_derivation_declare('regress_bob', 'regress_derive.docs', 'title', 'body', '{body}', 'generate', '{}')$$)
) AS t(stmt);
SELECT count(*) AS bob_sees FROM steadytext_derivation_status;
RESET ROLE;
-- a derivation's trigger function refuses to fire on another table than the derivation's source
CREATE TABLE regress_derive.other (id int PRIMARY KEY, body text);
SELECT format('CREATE TRIGGER t AFTER TRUNCATE ON regress_derive.other FOR EACH STATEMENT '
              'EXECUTE FUNCTION steadytext_derivation_after_truncate(%L)', min(id)) AS create_trigger
FROM steadytext_derivations \gset
:create_trigger;
SELECT sqlstate_of('TRUNCATE regress_derive.other') AS outcome;
DROP TABLE regress_derive.other;
SET ROLE regress_alice;
SELECT steadytext_derivation_drop('regress_derive.docs', destination) FROM steadytext_derivations ORDER BY id;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'regress_derive.docs'::regclass;
SELECT sqlstate_of($$SELECT steadytext_derivation_drop('regress_derive.docs', 'summary')$$) AS outcome;

-- chunked embeddings: a table of chunks next to the source, created as (and owned by) the
-- declarer, with a view joining them to their rows
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_derive('regress_derive.docs', 'docs', 'body', 'embed_chunks')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'doc_chunks', 'body', 'embed_chunks')$$)
) AS t(stmt);
RESET ROLE;
GRANT CREATE ON SCHEMA regress_derive TO regress_alice;
SET ROLE regress_alice;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_derive('regress_derive.docs', 'doc_chunks', 'body', 'embed_chunks', '{"chunk_tokens": 8}')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'doc_chunks', 'body', 'embed_chunks', '{"chunk_tokens": 100, "chunk_overlap": 60}')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'doc_chunks', 'body', 'embed_chunks', '{"max_tokens": 10}')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'doc_chunks', 'body', 'embed_chunks', '{"vector": "yes"}')$$),
    ($$SELECT steadytext_derive('regress_derive.docs', 'doc_chunks', 'body', 'embed_chunks', '{"vector": true}')$$)
) AS t(stmt);
INSERT INTO regress_derive.docs (id, title, body) VALUES (10, 'ten', E'Tenth body.\n\nIts second paragraph.');
SELECT steadytext_derive('regress_derive.docs', 'doc_chunks', 'body', 'embed_chunks',
                         '{"chunk_tokens": 64, "chunk_overlap": 8}') > 0 AS declared;
SELECT c.relname, c.relkind, c.relowner::regrole FROM pg_class c
WHERE c.relnamespace = 'regress_derive'::regnamespace AND c.relname LIKE 'doc_chunks%' ORDER BY 1;
SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'regress_derive.doc_chunks'::regclass AND attnum > 0 ORDER BY attnum;
RESET ROLE;
SELECT steadytext_derivation_walk(10000) IS NOT NULL AS walked FROM generate_series(1, 2);
SET ROLE regress_worker;
SELECT count(*) AS claimed FROM steadytext_queue_claim('regress-w', 100);
SELECT steadytext_queue_complete_many('regress-w', array_agg(request_id), array_agg(
           '[{"text": "Tenth body.", "embedding": "[1,0]"}, {"text": "Its second paragraph.", "embedding": "[0,1]"}]'::text))
       AS written
FROM steadytext_queue WHERE status = 'processing' AND function_name = 'embed_chunks';
RESET ROLE;
SET ROLE regress_alice;
SELECT id, chunk, chunk_text, embedding FROM regress_derive.doc_chunks ORDER BY id, chunk;
SELECT id, title, chunk, chunk_text FROM regress_derive.doc_chunks_with_source ORDER BY id, chunk;
DELETE FROM regress_derive.docs WHERE id = 10;
SELECT count(*) AS chunks_left FROM regress_derive.doc_chunks;
SELECT steadytext_derivation_drop('regress_derive.docs', 'doc_chunks');
DROP TABLE regress_derive.doc_chunks CASCADE;

-- a statement of more rows than a walk's batch (1000) leaves them to a walk: it enqueues nothing
-- itself, and the walk starts at its smallest key, or moves back to it
RESET ROLE;
CREATE TABLE regress_derive.bulk (id int PRIMARY KEY, body text, embedding real[]);
SELECT steadytext_derive('regress_derive.bulk', 'embedding', 'body') > 0 AS declared;
SELECT steadytext_derivation_walk(10) AS walked;
INSERT INTO regress_derive.bulk SELECT i, 'bulk ' || i FROM generate_series(501, 1600) AS i;
SELECT count(*) AS enqueued_by_the_insert FROM steadytext_queue q
JOIN steadytext_derivations d ON d.id = q.derivation_id WHERE d.source = 'regress_derive.bulk'::regclass;
SELECT walking, walk_after, walk_inclusive, walk_since IS NOT NULL AS since FROM steadytext_derivations
WHERE source = 'regress_derive.bulk'::regclass;
SELECT steadytext_derivation_walk(1000) AS walked;
SELECT walk_after, walk_inclusive FROM steadytext_derivations WHERE source = 'regress_derive.bulk'::regclass;
INSERT INTO regress_derive.bulk SELECT i, 'bulk ' || i FROM generate_series(1, 500) AS i
UNION ALL SELECT i, 'bulk ' || i FROM generate_series(1601, 2200) AS i;
SELECT walk_after, walk_inclusive FROM steadytext_derivations WHERE source = 'regress_derive.bulk'::regclass;
UPDATE regress_derive.bulk SET body = body || '!' WHERE id > 1000;
SELECT steadytext_derivation_walk(10000) AS walked FROM generate_series(1, 3);
SELECT count(*) AS pending, count(DISTINCT q.source_key) AS rows_pending FROM steadytext_queue q
JOIN steadytext_derivations d ON d.id = q.derivation_id
WHERE d.source = 'regress_derive.bulk'::regclass AND q.status = 'pending';
SELECT rows_total, rows_pending, backfilling FROM steadytext_derivation_status
WHERE source = 'regress_derive.bulk'::regclass;
DROP TABLE regress_derive.bulk;
SET ROLE regress_alice;

-- a result the table refuses (here a CHECK constraint) shows on its row; the completion goes on
RESET ROLE;
CREATE TABLE regress_derive.checked (id int PRIMARY KEY, body text, summary text CHECK (length(summary) < 5));
ALTER TABLE regress_derive.checked OWNER TO regress_alice;
SET ROLE regress_alice;
SELECT steadytext_derive('regress_derive.checked', 'summary', 'body', 'generate') > 0 AS declared;
INSERT INTO regress_derive.checked VALUES (1, 'short', NULL), (2, 'long', NULL);
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_derivation_walk() AS took FROM generate_series(1, 5);
RESET ROLE;
SET ROLE regress_worker;
SELECT count(*) AS claimed FROM steadytext_queue_claim('regress-w', 100);
SELECT steadytext_queue_complete_many('regress-w', array_agg(request_id ORDER BY id),
           array_agg(CASE WHEN source_key ->> 'id' = '1' THEN 'ok' ELSE 'far too long' END ORDER BY id))
       AS written
FROM steadytext_queue WHERE status = 'processing';
RESET ROLE;
SET ROLE regress_alice;
SELECT id, summary FROM regress_derive.checked ORDER BY id;
SELECT source_key, error FROM steadytext_derivation_rows r JOIN steadytext_derivations d ON d.id = r.derivation_id
WHERE d.source = 'regress_derive.checked'::regclass ORDER BY source_key;
SELECT steadytext_derivation_drop('regress_derive.checked', 'summary');

-- an input the expression cannot evaluate for a row (here a division by zero) shows on that
-- row; the statement that changed it goes through, and the other rows are derived
RESET ROLE;
CREATE TABLE regress_derive.fragile (id int PRIMARY KEY, body text, summary text);
ALTER TABLE regress_derive.fragile OWNER TO regress_alice;
SET ROLE regress_alice;
INSERT INTO regress_derive.fragile VALUES (1, 'fine', NULL), (2, '', NULL);
SELECT steadytext_derive('regress_derive.fragile', 'summary', $$body || (12 / length(body))$$, 'generate') > 0
       AS declared;
INSERT INTO regress_derive.fragile VALUES (3, 'also fine', NULL), (4, '', NULL);
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_derivation_walk() AS took FROM generate_series(1, 3);
RESET ROLE;
SET ROLE regress_alice;
SELECT q.source_key, q.parameters ->> 'prompt' AS prompt FROM steadytext_queue q
JOIN steadytext_derivations d ON d.id = q.derivation_id
WHERE d.source = 'regress_derive.fragile'::regclass ORDER BY q.source_key;
SELECT source_key, error FROM steadytext_derivation_rows r JOIN steadytext_derivations d ON d.id = r.derivation_id
WHERE d.source = 'regress_derive.fragile'::regclass AND error IS NOT NULL ORDER BY source_key;
SELECT rows_total, rows_pending, rows_failed, last_error FROM steadytext_derivation_status
WHERE source = 'regress_derive.fragile'::regclass;
SELECT steadytext_derivation_drop('regress_derive.fragile', 'summary');

-- the source changing under a derivation: a renamed or dropped input column, or a destination
-- of another type, disables it (its triggers are dropped, so statements on the table go on
-- working); a dropped table drops its derivations
RESET ROLE;
CREATE TABLE regress_derive.notes (id int PRIMARY KEY, body text, extra text, embedding real[], summary text);
ALTER TABLE regress_derive.notes OWNER TO regress_alice;
SET ROLE regress_alice;
INSERT INTO regress_derive.notes VALUES (1, 'a note', NULL, NULL, NULL);
SELECT steadytext_derive('regress_derive.notes', 'embedding', 'body') > 0 AS declared;
SELECT steadytext_derive('regress_derive.notes', 'summary', 'extra', 'generate') > 0 AS declared;
ALTER TABLE regress_derive.notes RENAME COLUMN body TO text_body;
INSERT INTO regress_derive.notes (id, text_body) VALUES (2, 'still insertable');
ALTER TABLE regress_derive.notes ALTER COLUMN summary TYPE varchar(100);
SELECT destination, state, disabled_reason FROM steadytext_derivation_status
WHERE source = 'regress_derive.notes'::regclass ORDER BY id;
SELECT count(*) AS triggers_left FROM pg_trigger WHERE tgrelid = 'regress_derive.notes'::regclass;
SELECT sqlstate_of($$SELECT steadytext_derivation_resume('regress_derive.notes', 'embedding')$$) AS outcome;
DROP TABLE regress_derive.notes;
SELECT count(*) AS derivations_left FROM steadytext_derivations;

-- a write-back's own UPDATE changes only its destination: a derivation that reads it (the
-- embedding of the summary) or a generated column (the size, from the summary's length) takes
-- it as a change; an UPDATE that a trigger runs inside it, and an input a BEFORE ROW trigger
-- changes in it, are changes for every derivation that reads them
RESET ROLE;
CREATE TABLE regress_derive.chain (id int PRIMARY KEY, body text, summary text, embedding real[],
    summary_len int GENERATED ALWAYS AS (length(summary)) STORED, size text);
ALTER TABLE regress_derive.chain OWNER TO regress_alice;
CREATE FUNCTION regress_derive.follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 1 AND NEW.summary IS DISTINCT FROM OLD.summary THEN
        UPDATE regress_derive.chain SET body = 'three, touched by a trigger' WHERE id = 3;
    END IF;
    RETURN NULL;
END
$$;
CREATE FUNCTION regress_derive.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 2 AND NEW.summary IS DISTINCT FROM OLD.summary THEN
        NEW.body := NEW.body || ', seen';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER follow AFTER UPDATE ON regress_derive.chain FOR EACH ROW
    EXECUTE FUNCTION regress_derive.follow();
SET ROLE regress_alice;
SELECT steadytext_derive('regress_derive.chain', 'summary', 'body', 'generate') > 0 AS declared;
SELECT steadytext_derive('regress_derive.chain', 'embedding', 'summary') > 0 AS declared;
SELECT steadytext_derive('regress_derive.chain', 'size', $$'length ' || summary_len$$, 'generate') > 0
       AS declared;
INSERT INTO regress_derive.chain (id, body) VALUES (1, 'one'), (2, 'two'), (3, 'three');
RESET ROLE;
SELECT count(steadytext_derivation_walk()) AS walks FROM generate_series(1, 8);
SELECT count(*) AS changes_left FROM steadytext_derivation_changes;
SET ROLE regress_worker;
SELECT count(*) AS claimed FROM steadytext_queue_claim('regress-w', 100);
SELECT steadytext_queue_complete_many('regress-w', array_agg(q.request_id), array_agg('summary one'::text))
       AS written
FROM steadytext_queue q JOIN steadytext_derivations d ON d.id = q.derivation_id
WHERE q.status = 'processing' AND d.source = 'regress_derive.chain'::regclass AND q.source_key = '{"id": 1}';
RESET ROLE;
SELECT d.destination, c.source_key FROM steadytext_derivation_changes c
JOIN steadytext_derivations d ON d.id = c.derivation_id
WHERE d.source = 'regress_derive.chain'::regclass ORDER BY d.id, c.source_key;
CREATE TRIGGER touch BEFORE UPDATE ON regress_derive.chain FOR EACH ROW
    EXECUTE FUNCTION regress_derive.touch();
SET ROLE regress_worker;
SELECT steadytext_queue_complete_many('regress-w', array_agg(q.request_id), array_agg('summary two'::text))
       AS written
FROM steadytext_queue q JOIN steadytext_derivations d ON d.id = q.derivation_id
WHERE q.status = 'processing' AND d.source = 'regress_derive.chain'::regclass AND q.source_key = '{"id": 2}';
RESET ROLE;
SELECT id, body, summary, summary_len FROM regress_derive.chain ORDER BY id;
SELECT d.destination, c.source_key FROM steadytext_derivation_changes c
JOIN steadytext_derivations d ON d.id = c.derivation_id
WHERE d.source = 'regress_derive.chain'::regclass ORDER BY d.id, c.source_key;
DROP TABLE regress_derive.chain;

-- operators (the dashboard runs as a member of steadytext_worker) see every derivation and
-- pause or resume one on its declarer's behalf; nobody else may
RESET ROLE;
CREATE TABLE regress_derive.ops (id int PRIMARY KEY, body text, embedding real[]);
ALTER TABLE regress_derive.ops OWNER TO regress_alice;
SET ROLE regress_alice;
SELECT steadytext_derive('regress_derive.ops', 'embedding', 'body') AS ops_id \gset
RESET ROLE;
SET ROLE regress_worker;
SELECT source, destination, state FROM steadytext_derivation_status ORDER BY id;
SELECT steadytext_derivation_operate(:ops_id, 'pause') AS paused;
SELECT state FROM steadytext_derivations WHERE id = :ops_id;
SELECT steadytext_derivation_operate(:ops_id, 'resume') AS resumed;
SELECT state, walking FROM steadytext_derivations WHERE id = :ops_id;
SELECT stmt, sqlstate_of(format(stmt, :ops_id)) AS outcome FROM (VALUES
    ($$SELECT steadytext_derivation_operate(%s, 'drop')$$),
    ($$SELECT steadytext_derivation_operate(%s, NULL)$$),
    ($$SELECT steadytext_derivation_operate(-1, 'pause')$$)
) AS t(stmt);
RESET ROLE;
SET ROLE regress_bob;
SELECT count(*) AS bob_sees FROM steadytext_derivations;
SELECT sqlstate_of(format($$SELECT steadytext_derivation_operate(%s, 'pause')$$, :ops_id))
       AS bob_may_not;
RESET ROLE;
DROP SCHEMA regress_derive CASCADE;
TRUNCATE steadytext_queue;
