-- pg_steadytext 0.1.0 → 0.2.0 (run by ALTER EXTENSION pg_steadytext UPDATE). 0.2.0 is not
-- released yet: what it adds lands here and in its base files (extension/sql/v0.2.0/) together,
-- and the regress tier checks that an installation upgraded from 0.1.0 has exactly the objects
-- of a fresh one (extension/tests/pg_regress/sql/extension_lifecycle.sql).
\echo Use "ALTER EXTENSION pg_steadytext UPDATE" to load this file. \quit

-- v0.2.0/dumped_tables.sql: the queue's rows are dumped with the database
SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_queue', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_queue_id_seq', '');

-- v0.2.0/result_compression.sql: results compressed with lz4 where PostgreSQL has it
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_catalog.pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE @extschema@.steadytext_queue ALTER COLUMN result SET COMPRESSION lz4;
        ALTER TABLE @extschema@.steadytext_result_cache ALTER COLUMN result SET COMPRESSION lz4;
    END IF;
END
$$;

-- the derivations' Rust primitives (src/derivation_rights.rs)
-- steadytext_derivation_run_as (Rust, as cargo pgrx schema writes it)
CREATE  FUNCTION "steadytext_derivation_run_as"(
	"role" oid, /* pg_sys :: Oid */
	"query" TEXT, /* & str */
	"arg" jsonb, /* Option < JsonB > */
	"writes" oid DEFAULT NULL, /* Option < pg_sys :: Oid > */
	"writes_column" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS SETOF jsonb /* JsonB */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'steadytext_derivation_run_as_wrapper';
-- steadytext_derivation_written_column (Rust, as cargo pgrx schema writes it)
CREATE  FUNCTION "steadytext_derivation_written_column"(
	"relid" oid /* pg_sys :: Oid */
) RETURNS TEXT /* Option < String > */
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'steadytext_derivation_written_column_wrapper';
-- steadytext_derivation_check_request (Rust, as cargo pgrx schema writes it)
CREATE  FUNCTION "steadytext_derivation_check_request"(
	"function_name" TEXT, /* & str */
	"parameters" jsonb /* JsonB */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'steadytext_derivation_check_request_wrapper';

-- v0.2.0/derivations.sql: derivations
-- One row per derivation. Users read their own (row-level security); the extension's functions
-- write them.
CREATE TABLE steadytext_derivations (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source            regclass NOT NULL,
    destination       name NOT NULL,
    -- how a result is converted for the destination: 'text', 'jsonb', 'real[]' or 'vector'
    -- (pgvector's vector(n), when pgvector is installed); 'chunks' for a chunked embedding,
    -- whose destination is the name of its chunk table (chunks)
    destination_type  text NOT NULL CHECK (destination_type IN ('text', 'jsonb', 'real[]', 'vector', 'chunks')),
    -- a chunked embedding's table of chunks: the source's key columns, chunk (1, 2, ...),
    -- chunk_text and embedding; created by steadytext_derive, owned by the declarer
    chunks            regclass,
    -- the SQL expression over the row's columns that the result is derived from, as declared
    input             text NOT NULL CHECK (input <> ''),
    -- the columns the input reads (from PostgreSQL's own dependency analysis of the expression)
    input_columns     name[] NOT NULL,
    -- the source's primary key columns, in key order: a row is named by them (source_key)
    key_columns       name[] NOT NULL CHECK (cardinality(key_columns) > 0),
    function_name     text NOT NULL CHECK (function_name IN (
                          'embed', 'embed_chunks', 'generate', 'generate_json', 'generate_regex',
                          'generate_choice')),
    -- the request's arguments but the input (max_tokens, seed, use_cache, schema, pattern, choices)
    parameters        jsonb NOT NULL CHECK (pg_catalog.jsonb_typeof(parameters) = 'object'),
    -- priority of requests for changed rows, and of those a walk (backfill) enqueues
    priority          integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    backfill_priority integer NOT NULL DEFAULT -100 CHECK (backfill_priority BETWEEN -1000 AND 1000),
    declarer          regrole NOT NULL,
    -- active: changes enqueue; paused: changes are recorded, nothing is enqueued (resume catches
    -- up); disabled: the source or an input column went away (disabled_reason says which)
    state             text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'disabled')),
    disabled_reason   text,
    -- bumped by steadytext_derivation_rederive: a row is in sync only if derived in this epoch
    epoch             integer NOT NULL DEFAULT 1 CHECK (epoch > 0),
    -- a walk over the source's rows in key order is under way (declare, resume, rederive) and
    -- has enqueued every row up to walk_after (NULL: none yet)
    walking           boolean NOT NULL DEFAULT true,
    walk_after        jsonb,
    -- the walk starts at walk_after itself (a statement of many rows handed its rows to it)
    walk_inclusive    boolean NOT NULL DEFAULT false,
    -- since when the walk has been under way (the lag of the rows it has not reached)
    walk_since        timestamptz DEFAULT pg_catalog.now(),
    created_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT steadytext_derivations_one_per_destination UNIQUE (source, destination),
    CONSTRAINT steadytext_derivations_disabled_reason
        CHECK ((state = 'disabled') = (disabled_reason IS NOT NULL)),
    CONSTRAINT steadytext_derivations_chunks
        CHECK ((function_name = 'embed_chunks') = (destination_type = 'chunks')
               AND (destination_type = 'chunks') = (chunks IS NOT NULL))
);

COMMENT ON TABLE steadytext_derivations IS
    'pg_steadytext derivations: a column kept equal to an AI function of an expression over its row';

-- One row per source row of a derivation: what its destination was derived from and what is
-- under way for it.
CREATE TABLE steadytext_derivation_rows (
    derivation_id bigint NOT NULL REFERENCES steadytext_derivations (id) ON DELETE CASCADE,
    -- the row's primary key as a JSON object {column: value}
    source_key    jsonb NOT NULL,
    -- sha256 of the row's input now (NULL: the input is NULL, and so is the destination)
    input_hash    bytea,
    -- sha256 of the input the destination was derived from, and in which epoch (NULL: never)
    derived_hash  bytea,
    derived_epoch integer,
    -- the request computing the current input (NULL: none under way)
    request_id    uuid,
    -- why the last request for the current input failed for good (or was cancelled)
    error         text,
    -- when the input last changed
    changed_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (derivation_id, source_key)
);

-- the rows with a request under way (found by their request at completion, counted by walks)
CREATE INDEX steadytext_derivation_rows_request_idx
    ON steadytext_derivation_rows (derivation_id, request_id) WHERE request_id IS NOT NULL;
-- the rows whose last request failed for good, newest first (counted exactly where the rest is
-- estimated: the dashboard's overview of a large derivation)
CREATE INDEX steadytext_derivation_rows_failed_idx
    ON steadytext_derivation_rows (derivation_id, changed_at) WHERE error IS NOT NULL;

COMMENT ON TABLE steadytext_derivation_rows IS
    'pg_steadytext derivations: per source row, what its destination was derived from and what is under way';

-- Source rows whose input may have changed and that no request reflects yet: a statement that
-- inserts or changes up to steadytext_derivation_statement_limit() rows records their keys here
-- and sends NOTIFY steadytext_jobs, 'walk'; the next steadytext_derivation_walk a worker runs
-- (at once, on that notification) evaluates their inputs and enqueues what changed, in batches.
-- Recording a key is one small insert, so a single-row INSERT costs less than a hand-written
-- trigger that enqueues (bench/README.md, derive_write_overhead); the worker does the rest for
-- many rows at once. No foreign key (its check would cost every statement a row lock): the
-- functions that drop or disable a derivation delete its changes.
CREATE TABLE steadytext_derivation_changes (
    derivation_id bigint NOT NULL,
    -- the row's primary key as a JSON object {column: value}
    source_key    jsonb NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- a derivation's changes, oldest first (taken in that order; the oldest is its lag)
CREATE INDEX steadytext_derivation_changes_idx
    ON steadytext_derivation_changes (derivation_id, changed_at);

COMMENT ON TABLE steadytext_derivation_changes IS
    'pg_steadytext derivations: source rows changed by a statement, not yet turned into requests';

-- The queue rows a derivation enqueued say which derivation and which source row they serve,
-- and the hash of the input they were computed from.
-- chunked embeddings are a function of their own: a text in, a JSON array of
-- {"text": chunk, "embedding": "[x,y,...]"} out
ALTER TABLE steadytext_queue
    DROP CONSTRAINT steadytext_queue_function_name_check,
    ADD CONSTRAINT steadytext_queue_function_name_check CHECK (function_name IN (
        'generate', 'embed', 'generate_json', 'generate_regex', 'generate_choice', 'rerank',
        'embed_chunks'));
ALTER TABLE steadytext_queue
    ADD COLUMN derivation_id bigint,
    ADD COLUMN source_key jsonb,
    ADD COLUMN input_hash bytea,
    ADD CONSTRAINT steadytext_queue_derivation_row
        CHECK ((derivation_id IS NULL) = (source_key IS NULL)
               AND (derivation_id IS NULL) = (input_hash IS NULL));

SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_derivations', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_derivations_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_derivation_rows', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.steadytext_derivation_changes', '');

-- Users see the derivations they declared (or whose declarer role they are members of) and
-- their rows; steadytext_worker sees all. Nobody but the extension's functions writes them.
ALTER TABLE steadytext_derivations ENABLE ROW LEVEL SECURITY;
ALTER TABLE steadytext_derivation_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE steadytext_derivation_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY steadytext_derivations_declarer_read ON steadytext_derivations
    FOR SELECT USING (pg_catalog.pg_has_role(declarer, 'USAGE'));
CREATE POLICY steadytext_derivation_rows_declarer_read ON steadytext_derivation_rows
    FOR SELECT USING (EXISTS (SELECT FROM @extschema@.steadytext_derivations d
                              WHERE d.id = derivation_id));
CREATE POLICY steadytext_derivation_changes_declarer_read ON steadytext_derivation_changes
    FOR SELECT USING (EXISTS (SELECT FROM @extschema@.steadytext_derivations d
                              WHERE d.id = derivation_id));
REVOKE ALL ON steadytext_derivations, steadytext_derivation_rows, steadytext_derivation_changes
    FROM PUBLIC;
GRANT SELECT ON steadytext_derivations, steadytext_derivation_rows, steadytext_derivation_changes
    TO PUBLIC;

-- ---------------------------------------------------------------------------------------------
-- SQL text built from a derivation's definition (PL/pgSQL, whose statements' plans a session
-- keeps, unlike a SQL function's with a SET clause, which is planned at every call). Identifiers are quoted with %I, the source is
-- printed by regclass (schema-qualified under the pinned search_path) and the input expression
-- is the declarer's own text, which only ever runs as the declarer.

-- The row's key as a JSON object, over the alias t.
CREATE FUNCTION steadytext_derivation_key_sql(d @extschema@.steadytext_derivations)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN @extschema@.steadytext_derivation_columns_sql(d.key_columns, 't');
END
$$;

-- The columns `cols` of the row `alias` as a JSON object {column: value}.
CREATE FUNCTION steadytext_derivation_columns_sql(cols name[], alias text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT format('jsonb_build_object(%s)',
                      coalesce(string_agg(format('%L, %I.%I', c, alias, c), ', ' ORDER BY n), ''))
        FROM unnest(cols) WITH ORDINALITY AS k(c, n));
END
$$;

-- `t`'s key equals the key held in `expr` (a jsonb expression), column by column in the key
-- columns' own types (so the primary key's index is used).
CREATE FUNCTION steadytext_derivation_key_match_sql(d @extschema@.steadytext_derivations, expr text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT string_agg(format('t.%I = (%s ->> %L)::%s', k.c, expr, k.c,
                                 format_type(a.atttypid, a.atttypmod)), ' AND ' ORDER BY k.n)
        FROM unnest(d.key_columns) WITH ORDINALITY AS k(c, n)
        JOIN pg_attribute a ON a.attrelid = d.source AND a.attname = k.c);
END
$$;

-- The key held in the jsonb parameter `param` (e.g. '$1') as a row of the key columns' own
-- types, in key order, to compare with a row of the key columns (`(t.a, t.b) > (...)`).
CREATE FUNCTION steadytext_derivation_key_typed_sql(d @extschema@.steadytext_derivations, param text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT string_agg(format('(%s ->> %L)::%s', param, k.c, format_type(a.atttypid, a.atttypmod)),
                          ', ' ORDER BY k.n)
        FROM unnest(d.key_columns) WITH ORDINALITY AS k(c, n)
        JOIN pg_attribute a ON a.attrelid = d.source AND a.attname = k.c);
END
$$;

-- The key columns of `t`, in key order.
CREATE FUNCTION steadytext_derivation_key_columns_sql(d @extschema@.steadytext_derivations)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT string_agg(format('t.%I', c), ', ' ORDER BY n)
        FROM unnest(d.key_columns) WITH ORDINALITY AS k(c, n));
END
$$;

-- The input expression as text, over the alias t (steadytext_derive checked that it is one
-- expression; the newline ends a trailing -- comment).
CREATE FUNCTION steadytext_derivation_input_sql(d @extschema@.steadytext_derivations)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT format('(%s' || chr(10) || ')::text', d.input));
END
$$;

-- The result `value` (a text expression) converted for the destination.
CREATE FUNCTION steadytext_derivation_value_sql(d @extschema@.steadytext_derivations, value text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN (SELECT CASE d.destination_type
            WHEN 'text' THEN value
            WHEN 'jsonb' THEN format('(%s)::jsonb', value)
            WHEN 'real[]' THEN format('pg_catalog.string_to_array(pg_catalog.btrim(%s, ''[]''), '','')::real[]', value)
            WHEN 'vector' THEN format('(%s)::%s', value, (SELECT format_type(a.atttypid, a.atttypmod)
                                              FROM pg_attribute a
                                              WHERE a.attrelid = d.source AND a.attname = d.destination))
            -- chunks: the chunk table's embedding column, real[] or vector
            ELSE (SELECT CASE WHEN a.atttypid = 'real[]'::regtype
                              THEN format('pg_catalog.string_to_array(pg_catalog.btrim(%s, ''[]''), '','')::real[]', value)
                              ELSE format('(%s)::%s', value, format_type(a.atttypid, a.atttypmod)) END
                  FROM pg_attribute a WHERE a.attrelid = d.chunks AND a.attname = 'embedding')
        END);
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Enqueueing.

-- Records the inputs of source rows that were inserted, changed, or walked over, and enqueues a
-- request for each row that needs one. `evaluated` is a JSON array of {"k": key, "h": hex sha256
-- of the input or null, "i": the input or null}, as a walk evaluates them.
-- A row needs a request if its input is new or changed (its old request, if any, is cancelled),
-- or, on a walk, if it is not in sync and nothing is under way or failed for it. Paused
-- derivations record the inputs and enqueue nothing. A row whose input became NULL gets a NULL
-- destination. Returns how many requests were enqueued.
CREATE FUNCTION steadytext_derivation_enqueue(d @extschema@.steadytext_derivations,
                                              evaluated jsonb, walk boolean)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    enqueued integer;
    nulled jsonb;
    touched bigint;
    superseded uuid[];
BEGIN
    WITH ev AS (
        SELECT e -> 'k' AS k, decode(e ->> 'h', 'hex') AS h, e ->> 'i' AS i
        FROM jsonb_array_elements(evaluated) AS e
    ), cur AS (
        -- one primary-key lookup per row (never a scan of the derivation's rows)
        SELECT ev.*, s.source_key IS NOT NULL AS known, s.input_hash AS old_hash,
               s.request_id AS old_request, s.derived_hash, s.derived_epoch, s.error
        FROM ev LEFT JOIN LATERAL (
            SELECT * FROM @extschema@.steadytext_derivation_rows r
            WHERE r.derivation_id = d.id AND r.source_key = ev.k
            OFFSET 0  -- kept apart: looked up per row through the primary key
        ) s ON true
    ), todo AS (
        SELECT * FROM cur
        WHERE NOT known OR old_hash IS DISTINCT FROM h
           OR (walk AND old_request IS NULL AND error IS NULL
               AND (derived_hash IS DISTINCT FROM h OR derived_epoch IS DISTINCT FROM d.epoch))
    ), queued AS (
        INSERT INTO @extschema@.steadytext_queue
            (function_name, parameters, priority, owner, max_retries, derivation_id, source_key,
             input_hash)
        SELECT d.function_name,
               d.parameters || jsonb_build_object(
                   CASE WHEN d.function_name IN ('embed', 'embed_chunks') THEN 'text_input' ELSE 'prompt' END,
                   todo.i),
               CASE WHEN walk THEN d.backfill_priority ELSE d.priority END,
               d.declarer,
               coalesce(nullif(current_setting('steadytext.max_retries', true), '')::integer, 3),
               d.id, todo.k, todo.h
        FROM todo
        WHERE todo.i IS NOT NULL AND d.state = 'active'
        RETURNING request_id, source_key
    ), recorded AS (
        INSERT INTO @extschema@.steadytext_derivation_rows AS s
            (derivation_id, source_key, input_hash, derived_hash, derived_epoch, request_id, error,
             changed_at)
        SELECT d.id, todo.k, todo.h,
               CASE WHEN todo.i IS NULL THEN NULL ELSE todo.derived_hash END,
               CASE WHEN todo.i IS NULL THEN d.epoch ELSE todo.derived_epoch END,
               queued.request_id, NULL, now()
        FROM todo LEFT JOIN queued ON queued.source_key = todo.k
        ON CONFLICT (derivation_id, source_key) DO UPDATE
        SET input_hash = EXCLUDED.input_hash, derived_hash = EXCLUDED.derived_hash,
            derived_epoch = EXCLUDED.derived_epoch, request_id = EXCLUDED.request_id, error = NULL,
            changed_at = CASE WHEN s.input_hash IS DISTINCT FROM EXCLUDED.input_hash
                              THEN now() ELSE s.changed_at END
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM queued),
           (SELECT jsonb_agg(jsonb_build_object('k', todo.k)) FROM todo
            WHERE todo.i IS NULL AND todo.derived_hash IS NOT NULL),
           (SELECT count(*) FROM recorded),
           ARRAY(SELECT old_request FROM todo WHERE old_request IS NOT NULL)
    INTO enqueued, nulled, touched, superseded;
    -- (a statement of its own, run only when there is something to cancel: as a part of the
    -- statement above it would open the queue for an UPDATE at every enqueue)
    IF cardinality(superseded) > 0 THEN
        WITH cancelled AS (
            UPDATE @extschema@.steadytext_queue q
            SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL
            WHERE q.request_id = ANY (superseded) AND q.status IN ('pending', 'processing')
            RETURNING q.request_id, q.function_name
        )
        SELECT count(@extschema@.steadytext_queue_notify_completed(request_id, function_name, 'cancelled'))
        INTO touched FROM cancelled;
    END IF;
    IF nulled IS NOT NULL AND d.destination_type = 'chunks' THEN
        PERFORM @extschema@.steadytext_derivation_run_as(d.declarer, format(
            'DELETE FROM %s AS t USING jsonb_array_elements($1) AS steadytext__w(e) '
            'WHERE %s RETURNING ''{}''::jsonb',
            d.chunks, @extschema@.steadytext_derivation_key_match_sql(d, 'steadytext__w.e -> ''k''')),
            nulled);
    ELSIF nulled IS NOT NULL THEN
        PERFORM @extschema@.steadytext_derivation_run_as(d.declarer, format(
            'UPDATE %s AS t SET %I = NULL FROM jsonb_array_elements($1) AS steadytext__w(e) '
            'WHERE %s RETURNING ''{}''::jsonb',
            d.source, d.destination, @extschema@.steadytext_derivation_key_match_sql(d, 'steadytext__w.e -> ''k''')),
            nulled);
    END IF;
    IF enqueued > 0 THEN
        PERFORM pg_notify('steadytext_jobs', format('%s:%s', floor(random() * 1e9)::bigint, enqueued));
    END IF;
    RETURN enqueued;
END
$$;

-- Evaluates, as the derivation's declarer, the key, input and input hash of the source rows
-- named by `keys` (a JSON array of keys), one primary-key probe each, and returns them as
-- steadytext_derivation_enqueue takes them. A row gone, or that the declarer cannot see, is
-- left out. When the input of some row cannot be evaluated (the expression raises an error for
-- its values), the rows are evaluated one by one and each that fails is left out with the error
-- on its bookkeeping row, so that one row never holds up the others.
CREATE FUNCTION steadytext_derivation_evaluate_keys(d @extschema@.steadytext_derivations, keys jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    query text := format(
        'SELECT jsonb_build_object(''k'', k, ''h'', encode(sha256(convert_to(i, ''UTF8'')), ''hex''), ''i'', i) '
        'FROM jsonb_array_elements($1) AS steadytext__w(e) CROSS JOIN LATERAL ('
        '    SELECT %s AS k, %s AS i FROM %s AS t WHERE %s'
        '    OFFSET 0) AS steadytext__e',  -- kept apart: one primary-key probe per key
        @extschema@.steadytext_derivation_key_sql(d), @extschema@.steadytext_derivation_input_sql(d),
        d.source, @extschema@.steadytext_derivation_key_match_sql(d, 'steadytext__w.e'));
    evaluated jsonb := '[]';
    k jsonb;
BEGIN
    BEGIN
        RETURN (SELECT coalesce(jsonb_agg(r), '[]')
                FROM @extschema@.steadytext_derivation_run_as(d.declarer, query, keys) AS r);
    EXCEPTION WHEN OTHERS THEN
        NULL;  -- one by one, below
    END;
    FOR k IN SELECT jsonb_array_elements(keys) LOOP
        BEGIN
            evaluated := evaluated || (SELECT coalesce(jsonb_agg(r), '[]')
                FROM @extschema@.steadytext_derivation_run_as(d.declarer, query, jsonb_build_array(k)) AS r);
        EXCEPTION WHEN OTHERS THEN
            INSERT INTO @extschema@.steadytext_derivation_rows AS s
                (derivation_id, source_key, input_hash, error, changed_at)
            VALUES (d.id, k, NULL, format('the input could not be evaluated: %s', SQLERRM), now())
            ON CONFLICT (derivation_id, source_key) DO UPDATE
            SET input_hash = NULL, error = EXCLUDED.error, changed_at = now();
        END;
    END LOOP;
    RETURN evaluated;
END
$$;

-- Takes up to batch_limit of derivation `d`'s recorded changes (steadytext_derivation_changes,
-- oldest first, skipping those another worker is taking), evaluates the current input of each
-- row they name (steadytext_derivation_evaluate_keys), and enqueues a request for each row whose
-- input is new or changed (steadytext_derivation_enqueue). Returns how many changes it took.
CREATE FUNCTION steadytext_derivation_take_changes(d @extschema@.steadytext_derivations,
                                                   batch_limit integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    taken integer;
    keys jsonb;
BEGIN
    WITH taken AS (
        DELETE FROM @extschema@.steadytext_derivation_changes c
        WHERE c.ctid = ANY (ARRAY(
            SELECT x.ctid FROM @extschema@.steadytext_derivation_changes x
            WHERE x.derivation_id = d.id
            ORDER BY x.changed_at
            LIMIT batch_limit
            FOR UPDATE SKIP LOCKED))
        RETURNING c.source_key
    )
    SELECT count(*), jsonb_agg(DISTINCT source_key) INTO taken, keys FROM taken;
    IF taken > 0 THEN
        PERFORM @extschema@.steadytext_derivation_enqueue(d,
            @extschema@.steadytext_derivation_evaluate_keys(d, keys), false);
    END IF;
    RETURN taken;
END
$$;

-- Forgets source rows that are gone (DELETE, or an UPDATE of their key): cancels what is under
-- way for them and drops their bookkeeping. `keys` is a JSON array of keys (NULL: every row,
-- for TRUNCATE).
CREATE FUNCTION steadytext_derivation_forget(d @extschema@.steadytext_derivations, keys jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    WITH gone AS (
        DELETE FROM @extschema@.steadytext_derivation_rows s
        WHERE s.derivation_id = d.id
          AND (keys IS NULL OR s.source_key = ANY (ARRAY(SELECT jsonb_array_elements(keys))))
        RETURNING s.request_id
    ), cancelled AS (
        UPDATE @extschema@.steadytext_queue q
        SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL
        WHERE q.request_id = ANY (ARRAY(SELECT request_id FROM gone WHERE request_id IS NOT NULL))
          AND q.status IN ('pending', 'processing')
        RETURNING q.request_id, q.function_name
    )
    SELECT count(@extschema@.steadytext_queue_notify_completed(request_id, function_name, 'cancelled'))
    FROM cancelled INTO STRICT n;
    -- (the changes recorded for rows deleted one by one are skipped when taken: those rows are
    -- gone)
    IF keys IS NULL THEN
        DELETE FROM @extschema@.steadytext_derivation_changes WHERE derivation_id = d.id;
    END IF;
END
$$;

-- The derivation a trigger fired for, or nothing if it is disabled or gone (its triggers are
-- being dropped). Refuses a trigger on another table than the derivation's source.
CREATE FUNCTION steadytext_derivation_for_trigger(id text, relid oid)
RETURNS @extschema@.steadytext_derivations
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.steadytext_derivations;
BEGIN
    SELECT * INTO d FROM @extschema@.steadytext_derivations WHERE steadytext_derivations.id = $1::bigint;
    IF NOT FOUND OR d.state = 'disabled' THEN
        RETURN NULL;
    END IF;
    IF d.source::oid <> relid THEN
        RAISE EXCEPTION 'the trigger of derivation % is on %, not on its source %', d.id,
            relid::regclass, d.source USING ERRCODE = '42501';
    END IF;
    RETURN d;
END
$$;

-- Statements that insert or change more rows than a walk's batch leave them to the walk
-- instead of enqueueing them in the statement (a 100 000-row INSERT ... SELECT or COPY then
-- costs one UPDATE here): the walk is started at `first_key` (the smallest key of the rows),
-- or moved back to it if it is already past it.
CREATE FUNCTION steadytext_derivation_defer(d @extschema@.steadytext_derivations, first_key jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    behind boolean;
BEGIN
    IF d.walking AND d.walk_after IS NOT NULL THEN
        EXECUTE format('SELECT (%s) %s (%s)',
                       @extschema@.steadytext_derivation_key_typed_sql(d, '$1'),
                       CASE WHEN d.walk_inclusive THEN '<' ELSE '<=' END,
                       @extschema@.steadytext_derivation_key_typed_sql(d, '$2'))
        USING first_key, d.walk_after INTO behind;
    END IF;
    UPDATE @extschema@.steadytext_derivations
    SET walking = true,
        walk_since = CASE WHEN walking THEN walk_since ELSE now() END,
        walk_after = CASE WHEN NOT walking OR behind THEN first_key ELSE walk_after END,
        walk_inclusive = CASE WHEN NOT walking OR behind THEN true ELSE walk_inclusive END
    WHERE id = d.id AND (NOT walking OR walk_after IS NOT NULL);
    PERFORM pg_notify('steadytext_jobs', 'walk');
END
$$;

-- Most rows a statement enqueues itself; more are left to a walk (steadytext_derivation_defer).
CREATE FUNCTION steadytext_derivation_statement_limit()
RETURNS bigint
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ BEGIN RETURN 1000; END $$;

-- The triggers steadytext_derive creates on the source (one per event: PostgreSQL allows
-- transition tables only on single-event triggers). They run as the queue's owner (SECURITY
-- DEFINER): they read the statement's transition tables, record the keys of the rows inserted or
-- whose input changed (steadytext_derivation_changes) and wake the workers, who evaluate the
-- input as the declarer; they forget the rows deleted. EXECUTE is not granted to anyone: only
-- the queue's owner can create triggers with them.
CREATE FUNCTION steadytext_derivation_after_insert()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.steadytext_derivations := @extschema@.steadytext_derivation_for_trigger(TG_ARGV[0], TG_RELID);
    not_key text[];
    first_key jsonb;
BEGIN
    IF d.id IS NULL THEN
        RETURN NULL;
    END IF;
    IF (SELECT count(*) FROM steadytext_new) > @extschema@.steadytext_derivation_statement_limit()
       AND d.state = 'active' THEN
        -- (the transition table is visible to this function's statements only)
        EXECUTE format('SELECT %s FROM steadytext_new AS t ORDER BY %s LIMIT 1',
                       @extschema@.steadytext_derivation_key_sql(d),
                       @extschema@.steadytext_derivation_key_columns_sql(d))
        INTO first_key;
        PERFORM @extschema@.steadytext_derivation_defer(d, first_key);
    ELSE
        not_key := @extschema@.steadytext_derivation_other_columns(TG_RELID, d.key_columns);
        INSERT INTO @extschema@.steadytext_derivation_changes (derivation_id, source_key)
        SELECT d.id, to_jsonb(n) - not_key FROM steadytext_new n;
        IF d.state = 'active' THEN
            PERFORM pg_notify('steadytext_jobs', 'walk');
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- The source's columns that are not among `keep` (to remove them from a row's jsonb: what is
-- left of `to_jsonb(row) - steadytext_derivation_other_columns(...)` is those columns alone,
-- e.g. the row's key as steadytext_derivation_key_sql builds it).
CREATE FUNCTION steadytext_derivation_other_columns(relid oid, keep name[])
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN ARRAY(SELECT a.attname::text FROM pg_attribute a
                 WHERE a.attrelid = relid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attname <> ALL (keep));
END
$$;

-- UPDATE: rows whose key and input columns are unchanged are skipped without evaluating
-- anything (the write-back's own UPDATE of the destination, an UPDATE of other columns); rows
-- whose key changed count as a DELETE of the old key and an INSERT of the new. The rows are
-- compared as jsonb with their other columns removed, in statements whose plans the session
-- keeps (a hashed anti-join each; an EXECUTE would be planned again at every statement).
CREATE FUNCTION steadytext_derivation_after_update()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.steadytext_derivations := @extschema@.steadytext_derivation_for_trigger(TG_ARGV[0], TG_RELID);
    compared text[];
    not_key text[];
    changed jsonb;
    gone jsonb;
    first_key jsonb;
    written name := @extschema@.steadytext_derivation_written_column(TG_RELID);
BEGIN
    IF d.id IS NULL THEN
        RETURN NULL;
    END IF;
    -- a write-back's own UPDATE changes only its destination: when this derivation reads neither
    -- it nor a generated column, and no BEFORE ROW trigger or rule could have changed anything
    -- else, there is nothing to compare (to_jsonb of every old and new row, vectors included)
    IF written IS NOT NULL AND written <> ALL (d.input_columns || d.key_columns)
       AND NOT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = TG_RELID AND (t.tgtype & 19) = 19)
       AND NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = TG_RELID AND c.relhasrules)
       AND NOT EXISTS (SELECT FROM pg_attribute a
                       WHERE a.attrelid = TG_RELID AND a.attname = ANY (d.input_columns)
                         AND a.attgenerated <> '') THEN
        RETURN NULL;
    END IF;
    not_key := @extschema@.steadytext_derivation_other_columns(TG_RELID, d.key_columns);
    compared := ARRAY(SELECT c FROM unnest(not_key) AS c WHERE c <> ALL (d.input_columns));
    WITH n AS (SELECT to_jsonb(x) AS r FROM steadytext_new x),
         o AS (SELECT to_jsonb(x) - compared AS r FROM steadytext_old x)
    SELECT (SELECT jsonb_agg(n.r) FROM n WHERE NOT EXISTS (SELECT FROM o WHERE o.r = n.r - compared)),
           (SELECT jsonb_agg(o.r - not_key) FROM o
            WHERE NOT EXISTS (SELECT FROM n WHERE n.r - not_key = o.r - not_key))
    INTO changed, gone;
    IF gone IS NOT NULL THEN
        PERFORM @extschema@.steadytext_derivation_forget(d, gone);
    END IF;
    IF changed IS NOT NULL AND jsonb_array_length(changed) > @extschema@.steadytext_derivation_statement_limit()
       AND d.state = 'active' THEN
        EXECUTE format('SELECT %s FROM steadytext_new AS t ORDER BY %s LIMIT 1',
                       @extschema@.steadytext_derivation_key_sql(d),
                       @extschema@.steadytext_derivation_key_columns_sql(d))
        INTO first_key;
        PERFORM @extschema@.steadytext_derivation_defer(d, first_key);
    ELSIF changed IS NOT NULL THEN
        INSERT INTO @extschema@.steadytext_derivation_changes (derivation_id, source_key)
        SELECT d.id, n - not_key FROM jsonb_array_elements(changed) AS n;
        IF d.state = 'active' THEN
            PERFORM pg_notify('steadytext_jobs', 'walk');
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION steadytext_derivation_after_delete()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.steadytext_derivations := @extschema@.steadytext_derivation_for_trigger(TG_ARGV[0], TG_RELID);
    not_key text[];
    gone jsonb;
BEGIN
    IF d.id IS NULL THEN
        RETURN NULL;
    END IF;
    not_key := @extschema@.steadytext_derivation_other_columns(TG_RELID, d.key_columns);
    SELECT jsonb_agg(to_jsonb(t) - not_key) INTO gone FROM steadytext_old t;
    IF gone IS NOT NULL THEN
        PERFORM @extschema@.steadytext_derivation_forget(d, gone);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION steadytext_derivation_after_truncate()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.steadytext_derivations := @extschema@.steadytext_derivation_for_trigger(TG_ARGV[0], TG_RELID);
BEGIN
    IF d.id IS NOT NULL THEN
        PERFORM @extschema@.steadytext_derivation_forget(d, NULL);
    END IF;
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Completion: the write-back.

-- Writes the results in `batch` (a JSON array of {"k": key, "h": hex input hash, "v": result,
-- "r": request id}, all current requests of derivation `d`) into their rows and marks those
-- rows in sync; returns the keys written. The bookkeeping rows and then the source rows are
-- locked NOWAIT (lock_not_available if another transaction holds one). A row whose input no
-- longer hashes to "h" (changed without the triggers seeing it), or that the declarer cannot
-- see, is not written and waits for the next walk. Each result finds its source row with one
-- primary-key probe (a LATERAL subquery kept apart by OFFSET 0) and is updated through its
-- tuple id (a TID scan): written as joins, the kept generic plan hashed the whole source table
-- at every completion.
CREATE FUNCTION steadytext_derivation_write_rows(d @extschema@.steadytext_derivations, batch jsonb)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- (its callers force generic plans; these statements, and the declarer's write, keep the plan
-- cache's own choice: a generic plan made at the first completion, when the bookkeeping table
-- was nearly empty, read it whole at every later one)
SET plan_cache_mode = auto
AS $$
DECLARE
    written jsonb;
BEGIN
    PERFORM FROM jsonb_array_elements(batch) AS e,
                 LATERAL (SELECT FROM @extschema@.steadytext_derivation_rows s
                          WHERE s.derivation_id = d.id AND s.source_key = e -> 'k'
                            AND s.request_id = (e ->> 'r')::uuid
                          FOR UPDATE NOWAIT) AS locked;
    IF d.destination_type = 'chunks' THEN
        SELECT coalesce(jsonb_agg(r), '[]') INTO written
        FROM @extschema@.steadytext_derivation_run_as(d.declarer, format(
            'WITH steadytext__w AS ('
            '    SELECT e -> ''k'' AS steadytext__k, e ->> ''h'' AS steadytext__h, e ->> ''v'' AS steadytext__v'
            '    FROM jsonb_array_elements($1) AS e'
            '), steadytext__locked AS ('
            '    SELECT l.*, steadytext__w.steadytext__k, steadytext__w.steadytext__v'
            '    FROM steadytext__w CROSS JOIN LATERAL ('
            '        SELECT %6$s FROM %1$s AS t'
            '        WHERE %2$s'
            '          AND encode(sha256(convert_to(%3$s, ''UTF8'')), ''hex'') = steadytext__w.steadytext__h'
            '        OFFSET 0 FOR UPDATE OF t NOWAIT) AS l'
            '), steadytext__pieces AS ('
            '    SELECT %7$s, x.n::integer AS chunk, x.e ->> ''text'' AS chunk_text,'
            '           x.e ->> ''embedding'' AS embedding'
            '    FROM steadytext__locked AS l, jsonb_array_elements(l.steadytext__v::jsonb) WITH ORDINALITY AS x(e, n)'
            '), steadytext__upserted AS ('
            '    INSERT INTO %4$s AS c (%8$s, chunk, chunk_text, embedding)'
            '    SELECT %8$s, chunk, chunk_text, %5$s FROM steadytext__pieces'
            '    ON CONFLICT (%8$s, chunk) DO UPDATE'
            '    SET chunk_text = EXCLUDED.chunk_text, embedding = EXCLUDED.embedding'
            '    RETURNING 1'
            '), steadytext__trimmed AS ('
            '    DELETE FROM %4$s AS t USING steadytext__locked AS l'
            '    WHERE %9$s AND t.chunk > jsonb_array_length(l.steadytext__v::jsonb)'
            '    RETURNING 1'
            ') SELECT l.steadytext__k FROM steadytext__locked AS l',
            d.source, @extschema@.steadytext_derivation_key_match_sql(d, 'steadytext__w.steadytext__k'),
            @extschema@.steadytext_derivation_input_sql(d), d.chunks,
            @extschema@.steadytext_derivation_value_sql(d, 'embedding'),
            @extschema@.steadytext_derivation_key_columns_sql(d),
            (SELECT string_agg(format('l.%I', c), ', ') FROM unnest(d.key_columns) AS c),
            (SELECT string_agg(format('%I', c), ', ') FROM unnest(d.key_columns) AS c),
            (SELECT string_agg(format('t.%1$I = l.%1$I', c), ' AND ') FROM unnest(d.key_columns) AS c)),
            batch) AS r;
    ELSE
    SELECT coalesce(jsonb_agg(r), '[]') INTO written
    FROM @extschema@.steadytext_derivation_run_as(d.declarer, format(
        'WITH steadytext__w AS ('
        '    SELECT e -> ''k'' AS steadytext__k, e ->> ''h'' AS steadytext__h, e ->> ''v'' AS steadytext__v'
        '    FROM jsonb_array_elements($1) AS e'
        '), steadytext__locked AS ('
        '    SELECT l.steadytext__tid, steadytext__w.steadytext__k, steadytext__w.steadytext__v'
        '    FROM steadytext__w CROSS JOIN LATERAL ('
        '        SELECT t.ctid AS steadytext__tid FROM %1$s AS t'
        '        WHERE %2$s'
        '          AND encode(sha256(convert_to(%3$s, ''UTF8'')), ''hex'') = steadytext__w.steadytext__h'
        '        OFFSET 0 FOR UPDATE OF t NOWAIT) AS l'
        ') UPDATE %1$s AS t SET %4$I = %5$s FROM steadytext__locked'
        '  WHERE t.ctid = ANY (ARRAY(SELECT steadytext__tid FROM steadytext__locked))'
        '    AND t.ctid = steadytext__locked.steadytext__tid RETURNING steadytext__locked.steadytext__k',
        d.source, @extschema@.steadytext_derivation_key_match_sql(d, 'steadytext__w.steadytext__k'),
        @extschema@.steadytext_derivation_input_sql(d), d.destination,
        @extschema@.steadytext_derivation_value_sql(d, 'steadytext__locked.steadytext__v')),
        batch, d.source::oid, d.destination) AS r;
    END IF;
    UPDATE @extschema@.steadytext_derivation_rows s
    SET derived_hash = CASE WHEN written @> jsonb_build_array(s.source_key) THEN s.input_hash
                            ELSE s.derived_hash END,
        derived_epoch = CASE WHEN written @> jsonb_build_array(s.source_key) THEN d.epoch
                             ELSE s.derived_epoch END,
        request_id = NULL, error = NULL
    -- (each row found by its primary key; as an ANY over both columns the kept plan read every
    -- row of the derivation with a request under way)
    WHERE s.ctid = ANY (ARRAY(
        SELECT r.ctid FROM jsonb_array_elements(batch) AS e
        CROSS JOIN LATERAL (
            SELECT x.ctid FROM @extschema@.steadytext_derivation_rows x
            WHERE x.derivation_id = d.id AND x.source_key = e -> 'k'
              AND x.request_id = (e ->> 'r')::uuid
            OFFSET 0) AS r));
    RETURN written;
END
$$;

-- Writes the results of completed derivation requests into their rows, in the transaction
-- that completes them (steadytext_queue_complete_many calls it). A result is written only while
-- it is the row's current request and the row's input, evaluated now as the declarer, still
-- hashes to what the request was computed from; the write runs as the declarer, under the
-- source's row-level security. Rows another transaction holds are not waited for: their
-- requests are returned, for steadytext_queue_complete_many to give back to the queue (their
-- result is a cache hit next time), so that a completion never waits on, or deadlocks with, a
-- user's transaction. A write that fails (a vector of another dimension, a constraint of the
-- table) is retried row by row, and the rows that still fail show why; the completion goes on.
-- Returns the ids of the requests given back.
CREATE FUNCTION steadytext_derivation_write_back(request_ids uuid[])
RETURNS uuid[]
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- (the statements below look up each request through its index whatever the number of
-- requests; left to choose, the plan cache planned them again at every completion, because a
-- plan made for the actual array looked cheaper than the kept one)
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    d @extschema@.steadytext_derivations;
    batch jsonb;
    one jsonb;
    busy uuid[] := '{}';
BEGIN
    -- (the requests are looked up one by one through request_id's unique index, kept apart by
    -- OFFSET 0: as `request_id = ANY(...) AND status = 'completed'` the kept plan also read the
    -- index of every finished request, which grows with the queue)
    FOR d IN
        SELECT * FROM @extschema@.steadytext_derivations
        WHERE id IN (SELECT q.derivation_id FROM unnest(request_ids) AS r(id)
                     CROSS JOIN LATERAL (SELECT x.derivation_id, x.status
                                         FROM @extschema@.steadytext_queue x
                                         WHERE x.request_id = r.id OFFSET 0) AS q
                     WHERE q.status = 'completed')
          AND state <> 'disabled'
        ORDER BY id
    LOOP
        SELECT jsonb_agg(jsonb_build_object('k', q.source_key, 'h', encode(q.input_hash, 'hex'),
                                            'v', q.result, 'r', q.request_id))
        INTO batch
        FROM unnest(request_ids) AS r(id)
        CROSS JOIN LATERAL (SELECT x.source_key, x.input_hash, x.result, x.request_id,
                                   x.derivation_id, x.status
                            FROM @extschema@.steadytext_queue x
                            WHERE x.request_id = r.id OFFSET 0) AS q
        CROSS JOIN LATERAL (
            SELECT FROM @extschema@.steadytext_derivation_rows s
            WHERE s.derivation_id = d.id AND s.source_key = q.source_key AND s.request_id = q.request_id
            OFFSET 0  -- kept apart: looked up per request through the primary key
        ) AS current_request
        WHERE q.derivation_id = d.id AND q.status = 'completed';
        IF batch IS NULL THEN
            CONTINUE;
        END IF;
        BEGIN
            PERFORM @extschema@.steadytext_derivation_write_rows(d, batch);
        EXCEPTION
            WHEN lock_not_available THEN
                busy := busy || ARRAY(SELECT (e ->> 'r')::uuid FROM jsonb_array_elements(batch) e);
            WHEN OTHERS THEN
                FOR one IN SELECT jsonb_array_elements(batch) LOOP
                    BEGIN
                        PERFORM @extschema@.steadytext_derivation_write_rows(d, jsonb_build_array(one));
                    EXCEPTION
                        WHEN lock_not_available THEN
                            busy := busy || (one ->> 'r')::uuid;
                        WHEN OTHERS THEN
                            UPDATE @extschema@.steadytext_derivation_rows s
                            SET request_id = NULL,
                                error = format('the result could not be written: %s', SQLERRM)
                            WHERE s.derivation_id = d.id AND s.source_key = one -> 'k'
                              AND s.request_id = (one ->> 'r')::uuid;
                    END;
                END LOOP;
        END;
    END LOOP;
    RETURN busy;
END
$$;

-- Records that a derivation's request ended without a result (failed for good, or cancelled by
-- someone else than the derivation itself): its row keeps its destination and shows `error`.
CREATE FUNCTION steadytext_derivation_request_ended(request_id uuid, error text)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE @extschema@.steadytext_derivation_rows s
    SET request_id = NULL, error = $2
    FROM @extschema@.steadytext_queue q
    WHERE q.request_id = $1 AND s.derivation_id = q.derivation_id AND s.source_key = q.source_key
      AND s.request_id = $1;
$$;

-- ---------------------------------------------------------------------------------------------
-- Walks: backfill when declared, catching up on resume, everything again on rederive.

-- Turns up to batch_limit recorded changes of one active derivation into requests
-- (steadytext_derivation_take_changes), or else enqueues the next batch of at most batch_limit
-- source rows (in key order) of one derivation that is walking, skipping derivations another
-- worker holds and walks with batch_limit or more requests still pending, so that a walk never
-- floods the queue (changes are not held back: they are users' edits, at the derivation's
-- priority). Workers call it again while it returns a count. Returns how many changes it took
-- or rows it walked over; 0: the walking derivations are waiting for their requests to drain;
-- NULL: nothing to do (no changes, and no walk under way or one that just ended).
CREATE FUNCTION steadytext_derivation_walk(batch_limit integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.steadytext_derivations;
    walked jsonb;
    got integer;
    draining boolean := false;
BEGIN
    IF batch_limit IS NULL OR batch_limit < 1 OR batch_limit > 10000 THEN
        RAISE EXCEPTION 'batch_limit must be between 1 and 10000, got %', batch_limit
            USING ERRCODE = '22023';
    END IF;
    FOR d IN
        SELECT * FROM @extschema@.steadytext_derivations x
        WHERE x.state = 'active'
          AND (x.walking OR EXISTS (SELECT FROM @extschema@.steadytext_derivation_changes c
                                    WHERE c.derivation_id = x.id))
        ORDER BY x.id
        FOR UPDATE SKIP LOCKED
    LOOP
        got := @extschema@.steadytext_derivation_take_changes(d, batch_limit);
        IF got > 0 THEN
            RETURN got;
        END IF;
        IF NOT d.walking THEN
            CONTINUE;
        END IF;
        -- (requests under way: pending or processing, counted on their partial index)
        IF (SELECT count(*) FROM @extschema@.steadytext_derivation_rows s
            WHERE s.derivation_id = d.id AND s.request_id IS NOT NULL) >= batch_limit THEN
            draining := true;
            CONTINUE;
        END IF;
        -- the next keys in key order, then their inputs (so that a row whose input cannot be
        -- evaluated shows its error instead of stopping the walk there)
        SELECT jsonb_agg(r ORDER BY ord) INTO walked
        FROM @extschema@.steadytext_derivation_run_as(d.declarer, format(
            'SELECT %s FROM %s AS t %s ORDER BY %s LIMIT %s',
            @extschema@.steadytext_derivation_key_sql(d),
            d.source,
            CASE WHEN d.walk_after IS NULL THEN '' ELSE format('WHERE (%s) %s (%s)',
                @extschema@.steadytext_derivation_key_columns_sql(d),
                CASE WHEN d.walk_inclusive THEN '>=' ELSE '>' END,
                @extschema@.steadytext_derivation_key_typed_sql(d, '$1')) END,
            @extschema@.steadytext_derivation_key_columns_sql(d),
            batch_limit), d.walk_after) WITH ORDINALITY AS w(r, ord);
        got := coalesce(jsonb_array_length(walked), 0);
        IF got > 0 THEN
            PERFORM @extschema@.steadytext_derivation_enqueue(d,
                @extschema@.steadytext_derivation_evaluate_keys(d, walked), true);
        END IF;
        UPDATE @extschema@.steadytext_derivations
        SET walk_after = CASE WHEN got > 0 THEN walked -> (got - 1) ELSE walk_after END,
            walk_inclusive = walk_inclusive AND got = 0,
            walking = got >= batch_limit,
            walk_since = CASE WHEN got >= batch_limit THEN walk_since END
        WHERE id = d.id;
        -- (a walk that found no more rows has ended: on to the next derivation)
        IF got > 0 THEN
            RETURN got;
        END IF;
    END LOOP;
    RETURN CASE WHEN draining THEN 0 END;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- Declaring and managing derivations. The user-facing functions (steadytext_derive,
-- steadytext_derivation_pause/resume/rederive/drop) are Rust functions in src/derivations.rs:
-- they check the input expression as the caller, then call these as the queue's owner with
-- the caller's role.

-- Creates the derivation (see steadytext_derive) for `declarer`, who has been checked to be the
-- caller; `input_columns` are the columns the input reads. Returns its id.
CREATE FUNCTION steadytext_derivation_declare(declarer regrole, source regclass, destination name,
                                              input text, input_columns name[], kind text,
                                              options jsonb)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    key_columns name[];
    dest record;
    dest_type text;
    params jsonb;
    allowed text[];
    bad text;
    priority integer;
    backfill_priority integer;
    id bigint;
    c name;
    nsp oid;
    embedding_type text;
    key_defs text;
    key_list text;
    chunks regclass;
BEGIN
    IF kind IS NULL OR kind NOT IN ('embed', 'embed_chunks', 'generate', 'generate_json', 'generate_regex',
                                    'generate_choice') THEN
        RAISE EXCEPTION 'kind must be embed, embed_chunks, generate, generate_json, generate_regex or generate_choice, got %',
            coalesce(quote_literal(kind), 'NULL') USING ERRCODE = '22023';
    END IF;
    IF options IS NULL OR jsonb_typeof(options) <> 'object' THEN
        RAISE EXCEPTION 'options must be a JSON object' USING ERRCODE = '22023';
    END IF;
    -- the source: an ordinary or partitioned table with a primary key
    IF (SELECT relkind FROM pg_class WHERE oid = source) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'source % is not a table', source USING ERRCODE = '42809';
    END IF;
    SELECT array_agg(a.attname ORDER BY k.n) INTO key_columns
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = source AND i.indisprimary;
    IF key_columns IS NULL THEN
        RAISE EXCEPTION 'source % has no primary key', source
            USING ERRCODE = '55000',
                  HINT = 'A derivation names each source row by its primary key (of any columns and types); add one.';
    END IF;
    nsp := (SELECT relnamespace FROM pg_class WHERE oid = source);
    IF kind = 'embed_chunks' THEN
        -- the destination: a new table of chunks next to the source
        IF EXISTS (SELECT FROM pg_class WHERE relnamespace = nsp AND relname = destination) THEN
            RAISE EXCEPTION 'relation "%" already exists in schema %', destination, nsp::regnamespace
                USING ERRCODE = '42P07',
                      HINT = 'A chunked embedding creates its table of chunks; name one that does not exist.';
        END IF;
        IF EXISTS (SELECT FROM pg_class WHERE relnamespace = nsp AND relname = destination || '_with_source') THEN
            RAISE EXCEPTION 'relation "%" already exists in schema %', destination || '_with_source',
                nsp::regnamespace USING ERRCODE = '42P07';
        END IF;
        IF NOT has_schema_privilege(declarer, nsp, 'CREATE') THEN
            RAISE EXCEPTION 'permission denied to create the table of chunks "%" in schema %', destination,
                nsp::regnamespace USING ERRCODE = '42501';
        END IF;
        dest_type := 'chunks';
    ELSE
        -- the destination: a column of the source, of a type a result converts to
        SELECT a.attname, a.atttypid, a.atttypmod, a.attgenerated, t.typname, t.typnamespace,
               format_type(a.atttypid, a.atttypmod) AS shown
        INTO dest
        FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = source AND a.attname = destination AND a.attnum > 0 AND NOT a.attisdropped;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of % does not exist', destination, source USING ERRCODE = '42703';
        END IF;
        IF dest.attgenerated <> '' THEN
            RAISE EXCEPTION 'destination "%" is a generated column', destination USING ERRCODE = '42P17';
        END IF;
        IF destination = ANY(key_columns) THEN
            RAISE EXCEPTION 'destination "%" is part of the primary key of %', destination, source
                USING ERRCODE = '42P17';
        END IF;
        IF destination = ANY(input_columns) THEN
            RAISE EXCEPTION 'destination "%" is read by the input expression', destination
                USING ERRCODE = '42P17', DETAIL = 'Every result written would change the input and derive it again.';
        END IF;
        dest_type := CASE
            WHEN dest.atttypid = 'text'::regtype THEN 'text'
            WHEN dest.atttypid = 'jsonb'::regtype THEN 'jsonb'
            WHEN dest.atttypid = 'real[]'::regtype THEN 'real[]'
            WHEN dest.typname = 'vector' AND EXISTS (SELECT FROM pg_depend dep JOIN pg_extension e ON e.oid = dep.refobjid
                                                     WHERE dep.classid = 'pg_type'::regclass AND dep.objid = dest.atttypid
                                                       AND dep.deptype = 'e' AND e.extname = 'vector') THEN 'vector'
        END;
        IF kind = 'embed' AND dest_type IS DISTINCT FROM 'real[]' AND dest_type IS DISTINCT FROM 'vector' THEN
            RAISE EXCEPTION 'destination "%" is %, and an embedding needs real[] or vector', destination, dest.shown
                USING ERRCODE = '42804';
        END IF;
        IF kind <> 'embed' AND dest_type IS DISTINCT FROM 'text'
           AND NOT (kind = 'generate_json' AND dest_type = 'jsonb') THEN
            RAISE EXCEPTION 'destination "%" is %, and % needs text%', destination, dest.shown, kind,
                CASE WHEN kind = 'generate_json' THEN ' or jsonb' ELSE '' END
                USING ERRCODE = '42804';
        END IF;
    END IF;
    -- rights: the declarer may write the destination and read the key and input columns
    IF kind <> 'embed_chunks' AND NOT has_column_privilege(declarer, source, destination, 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied to derive into column "%" of %', destination, source
            USING ERRCODE = '42501', DETAIL = 'The declarer must be allowed to UPDATE the destination.';
    END IF;
    FOREACH c IN ARRAY key_columns || input_columns LOOP
        IF NOT has_column_privilege(declarer, source, c, 'SELECT') THEN
            RAISE EXCEPTION 'permission denied to read column "%" of %', c, source USING ERRCODE = '42501';
        END IF;
    END LOOP;
    IF EXISTS (SELECT FROM @extschema@.steadytext_derivations x
               WHERE x.source = steadytext_derivation_declare.source
                 AND x.destination = steadytext_derivation_declare.destination) THEN
        RAISE EXCEPTION 'column "%" of % is already a derivation''s destination', destination, source
            USING ERRCODE = '42710', HINT = 'Drop that derivation first (steadytext_derivation_drop).';
    END IF;
    -- options: the kind's arguments, and the priorities
    allowed := ARRAY['priority', 'backfill_priority', 'use_cache', 'seed']
        || CASE WHEN kind = 'embed' THEN '{}'::text[]
                WHEN kind = 'embed_chunks' THEN ARRAY['chunk_tokens', 'chunk_overlap', 'vector']
                ELSE ARRAY['max_tokens'] END
        || CASE kind WHEN 'generate_json' THEN ARRAY['schema'] WHEN 'generate_regex' THEN ARRAY['pattern']
                     WHEN 'generate_choice' THEN ARRAY['choices'] ELSE '{}'::text[] END;
    SELECT string_agg(quote_literal(k), ', ') INTO bad FROM jsonb_object_keys(options) AS k WHERE k <> ALL(allowed);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'unknown option % for %', bad, kind USING ERRCODE = '22023',
            HINT = format('Options of %s: %s.', kind, array_to_string(allowed, ', '));
    END IF;
    BEGIN
        priority := coalesce((options ->> 'priority')::integer, 0);
        backfill_priority := coalesce((options ->> 'backfill_priority')::integer, -100);
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
        RAISE EXCEPTION 'priority and backfill_priority must be integers' USING ERRCODE = '22023';
    END;
    IF priority NOT BETWEEN -1000 AND 1000 OR backfill_priority NOT BETWEEN -1000 AND 1000 THEN
        RAISE EXCEPTION 'priority and backfill_priority must be between -1000 and 1000' USING ERRCODE = '22023';
    END IF;
    params := options - 'priority' - 'backfill_priority' - 'vector';
    IF kind = 'embed_chunks' THEN
        IF jsonb_typeof(options -> 'vector') NOT IN ('boolean', 'null') THEN
            RAISE EXCEPTION 'vector must be true or false' USING ERRCODE = '22023';
        END IF;
        IF (options ->> 'vector')::boolean THEN
            SELECT format('%I.vector', e.extnamespace::regnamespace) INTO embedding_type
            FROM pg_extension e WHERE e.extname = 'vector';
            IF embedding_type IS NULL THEN
                RAISE EXCEPTION 'pgvector is not installed' USING ERRCODE = '55000',
                    HINT = 'CREATE EXTENSION vector, or leave out "vector" to store real[].';
            END IF;
        ELSE
            embedding_type := 'real[]';
        END IF;
    END IF;
    -- the request's arguments are checked by the rules every request is checked with
    PERFORM @extschema@.steadytext_derivation_check_request(kind, params);
    IF kind = 'embed_chunks' THEN
        -- created as the declarer (who owns it): the source's key, the chunk's number, text and
        -- embedding; a source row's chunks go with it (ON DELETE CASCADE)
        SELECT string_agg(format('%I %s NOT NULL', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY k.n),
               string_agg(format('%I', a.attname), ', ' ORDER BY k.n)
        INTO key_defs, key_list
        FROM unnest(key_columns) WITH ORDINALITY AS k(c, n)
        JOIN pg_attribute a ON a.attrelid = source AND a.attname = k.c;
        PERFORM @extschema@.steadytext_derivation_run_as(declarer, format(
            'CREATE TABLE %1$I.%2$I (%3$s, chunk integer NOT NULL CHECK (chunk > 0), '
            'chunk_text text NOT NULL, embedding %4$s NOT NULL, PRIMARY KEY (%5$s, chunk), '
            'FOREIGN KEY (%5$s) REFERENCES %6$s (%5$s) ON DELETE CASCADE ON UPDATE CASCADE)',
            nsp::regnamespace, destination, key_defs, embedding_type, key_list, source), NULL);
        PERFORM @extschema@.steadytext_derivation_run_as(declarer, format(
            'CREATE VIEW %1$I.%2$I AS SELECT s.*, c.chunk, c.chunk_text, c.embedding AS chunk_embedding '
            'FROM %3$s AS s JOIN %1$I.%4$I AS c USING (%5$s)',
            nsp::regnamespace, destination || '_with_source', source, destination, key_list), NULL);
        chunks := format('%I.%I', nsp::regnamespace, destination)::regclass;
    END IF;
    INSERT INTO @extschema@.steadytext_derivations
        (source, destination, destination_type, chunks, input, input_columns, key_columns,
         function_name, parameters, priority, backfill_priority, declarer)
    VALUES (source, destination, dest_type, chunks, input, input_columns, key_columns, kind, params,
            priority, backfill_priority, declarer)
    RETURNING steadytext_derivations.id INTO id;
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS steadytext_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.steadytext_derivation_after_insert(%L)',
                   format('steadytext_derivation_%s_insert', id), source, id);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS steadytext_old '
                   'NEW TABLE AS steadytext_new '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.steadytext_derivation_after_update(%L)',
                   format('steadytext_derivation_%s_update', id), source, id);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS steadytext_old '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.steadytext_derivation_after_delete(%L)',
                   format('steadytext_derivation_%s_delete', id), source, id);
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.steadytext_derivation_after_truncate(%L)',
                   format('steadytext_derivation_%s_truncate', id), source, id);
    -- workers start the backfill walk
    PERFORM pg_notify('steadytext_jobs', 'walk');
    RETURN id;
END
$$;

-- Cancels every request of derivation `derivation_id` that is pending or processing (its
-- rows' bookkeeping still names them), announcing each cancel.
CREATE FUNCTION steadytext_derivation_cancel_under_way(derivation_id bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    WITH cancelled AS (
        UPDATE @extschema@.steadytext_queue q
        SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL
        WHERE q.request_id = ANY (ARRAY(
                  SELECT s.request_id FROM @extschema@.steadytext_derivation_rows s
                  WHERE s.derivation_id = steadytext_derivation_cancel_under_way.derivation_id
                    AND s.request_id IS NOT NULL))
          AND q.status IN ('pending', 'processing')
        RETURNING q.request_id, q.function_name
    )
    SELECT count(@extschema@.steadytext_queue_notify_completed(request_id, function_name, 'cancelled'))
    FROM cancelled INTO STRICT n;
    RETURN n;
END
$$;

-- Drops the triggers of derivation `d` (if its source still exists).
CREATE FUNCTION steadytext_derivation_drop_triggers(d @extschema@.steadytext_derivations)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = d.source) THEN
        RETURN;
    END IF;
    FOREACH event IN ARRAY ARRAY['insert', 'update', 'delete', 'truncate'] LOOP
        IF EXISTS (SELECT FROM pg_trigger
                   WHERE tgrelid = d.source AND tgname = format('steadytext_derivation_%s_%s', d.id, event)) THEN
            EXECUTE format('DROP TRIGGER %I ON %s',
                           format('steadytext_derivation_%s_%s', d.id, event), d.source);
        END IF;
    END LOOP;
END
$$;

-- Pauses, resumes, rederives or drops the derivation of `destination` on `source` for `caller`,
-- who must be its declarer (or a member of that role) or a superuser.
--   pause: changes are recorded (steadytext_derivation_changes) but not taken, and nothing is
--          enqueued; what is pending is cancelled.
--   resume: enqueues (walking the source) every row that is not in sync, then follows changes.
--   rederive: every row is derived again (after a model change): bumps the epoch, cancels what
--             is pending, clears errors and walks the whole source.
--   drop: cancels what is pending and drops the triggers, the bookkeeping and the changes not
--         yet taken; the destination keeps its values.
CREATE FUNCTION steadytext_derivation_manage(caller regrole, source regclass, destination name,
                                             action text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.steadytext_derivations;
BEGIN
    SELECT * INTO d FROM @extschema@.steadytext_derivations x
    WHERE x.source = steadytext_derivation_manage.source
      AND x.destination = steadytext_derivation_manage.destination
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'column "%" of % is not a derivation''s destination', destination, source
            USING ERRCODE = '42704';
    END IF;
    IF NOT pg_has_role(caller, d.declarer, 'USAGE')
       AND NOT (SELECT rolsuper FROM pg_roles WHERE oid = caller) THEN
        RAISE EXCEPTION 'permission denied to % the derivation of column "%" of %', action,
            destination, source USING ERRCODE = '42501',
            DETAIL = format('It was declared by %s.', d.declarer);
    END IF;
    IF action IN ('pause', 'rederive', 'drop') THEN
        PERFORM @extschema@.steadytext_derivation_cancel_under_way(d.id);
    END IF;
    CASE action
    WHEN 'pause' THEN
        UPDATE @extschema@.steadytext_derivation_rows SET request_id = NULL
        WHERE derivation_id = d.id AND request_id IS NOT NULL;
        UPDATE @extschema@.steadytext_derivations
        SET state = 'paused', walking = false, walk_since = NULL WHERE id = d.id;
    WHEN 'resume' THEN
        IF d.state = 'disabled' THEN
            RAISE EXCEPTION 'the derivation of column "%" of % is disabled: %', destination, source,
                d.disabled_reason USING ERRCODE = '55000',
                HINT = 'Drop it and declare it again.';
        END IF;
        UPDATE @extschema@.steadytext_derivations
        SET state = 'active', walking = true, walk_after = NULL, walk_inclusive = false,
            walk_since = now() WHERE id = d.id;
        PERFORM pg_notify('steadytext_jobs', 'walk');
    WHEN 'rederive' THEN
        IF d.state = 'disabled' THEN
            RAISE EXCEPTION 'the derivation of column "%" of % is disabled: %', destination, source,
                d.disabled_reason USING ERRCODE = '55000',
                HINT = 'Drop it and declare it again.';
        END IF;
        UPDATE @extschema@.steadytext_derivation_rows SET request_id = NULL, error = NULL
        WHERE derivation_id = d.id AND (request_id IS NOT NULL OR error IS NOT NULL);
        UPDATE @extschema@.steadytext_derivations
        SET epoch = epoch + 1, walking = state = 'active', walk_after = NULL, walk_inclusive = false,
            walk_since = CASE WHEN state = 'active' THEN now() END WHERE id = d.id;
        PERFORM pg_notify('steadytext_jobs', 'walk');
    WHEN 'drop' THEN
        PERFORM @extschema@.steadytext_derivation_drop_triggers(d);
        DELETE FROM @extschema@.steadytext_derivation_changes WHERE derivation_id = d.id;
        DELETE FROM @extschema@.steadytext_derivations WHERE id = d.id;
    ELSE
        RAISE EXCEPTION 'unknown action %', action USING ERRCODE = '22023';
    END CASE;
    RETURN true;
END
$$;

-- Disables derivation `d` because of `reason` (its source changed under it): cancels what is
-- pending and forgets the changes not yet taken, drops its triggers (so that no statement on
-- the source fails because of it) and keeps its rows' bookkeeping and its destination's
-- values. Raises a WARNING saying so.
CREATE FUNCTION steadytext_derivation_disable(d @extschema@.steadytext_derivations, reason text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
BEGIN
    PERFORM @extschema@.steadytext_derivation_cancel_under_way(d.id);
    UPDATE @extschema@.steadytext_derivation_rows SET request_id = NULL
    WHERE derivation_id = d.id AND request_id IS NOT NULL;
    PERFORM @extschema@.steadytext_derivation_drop_triggers(d);
    DELETE FROM @extschema@.steadytext_derivation_changes WHERE derivation_id = d.id;
    UPDATE @extschema@.steadytext_derivations
    SET state = 'disabled', disabled_reason = reason, walking = false, walk_since = NULL
    WHERE id = d.id;
    RAISE WARNING 'pg_steadytext disabled the derivation of column "%" of %: %', d.destination, d.source, reason
        USING HINT = 'Drop it (steadytext_derivation_drop) and declare it again.';
END
$$;

-- After ALTER TABLE: a derivation whose source lost (by DROP COLUMN or RENAME) a column its
-- input reads, its key or its destination is disabled, as is one whose destination changed to a
-- type a result cannot be written as.
CREATE FUNCTION steadytext_derivation_after_alter()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.steadytext_derivations;
    missing text;
    dest_type regtype;
    retyped boolean;
BEGIN
    FOR d IN
        SELECT * FROM @extschema@.steadytext_derivations
        WHERE state <> 'disabled'
          AND source::oid IN (SELECT c.objid FROM pg_event_trigger_ddl_commands() c
                              WHERE c.classid = 'pg_class'::regclass)
        ORDER BY id
    LOOP
        SELECT string_agg(quote_ident(c), ', ' ORDER BY c) INTO missing
        FROM unnest(d.key_columns || d.input_columns
                    || CASE WHEN d.chunks IS NULL THEN ARRAY[d.destination] ELSE '{}'::name[] END) AS c
        WHERE NOT EXISTS (SELECT FROM pg_attribute a
                          WHERE a.attrelid = d.source AND a.attname = c AND a.attnum > 0
                            AND NOT a.attisdropped);
        IF missing IS NOT NULL THEN
            PERFORM @extschema@.steadytext_derivation_disable(d,
                format('column %s is gone (dropped or renamed)', missing));
            CONTINUE;
        END IF;
        IF d.chunks IS NOT NULL THEN
            CONTINUE;
        END IF;
        SELECT a.atttypid::regtype INTO dest_type FROM pg_attribute a
        WHERE a.attrelid = d.source AND a.attname = d.destination;
        SELECT CASE d.destination_type WHEN 'text' THEN dest_type <> 'text'::regtype
                                       WHEN 'jsonb' THEN dest_type <> 'jsonb'::regtype
                                       WHEN 'real[]' THEN dest_type <> 'real[]'::regtype
                                       ELSE dest_type::text NOT LIKE '%vector' END
        INTO retyped;
        IF retyped THEN
            PERFORM @extschema@.steadytext_derivation_disable(d,
                format('destination "%s" is now %s, not %s', d.destination, dest_type, d.destination_type));
        END IF;
    END LOOP;
END
$$;

-- After DROP: the derivations of a dropped table are dropped with it (its triggers went with
-- it), and what was pending for them is cancelled.
CREATE FUNCTION steadytext_derivation_after_drop()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d record;
    dd @extschema@.steadytext_derivations;
BEGIN
    FOR d IN
        SELECT x.id, x.destination, o.object_identity
        FROM @extschema@.steadytext_derivations x
        JOIN pg_event_trigger_dropped_objects() o
          ON o.classid = 'pg_class'::regclass AND o.objid = x.source::oid AND o.objsubid = 0
        ORDER BY x.id
    LOOP
        PERFORM @extschema@.steadytext_derivation_cancel_under_way(d.id);
        DELETE FROM @extschema@.steadytext_derivation_changes WHERE derivation_id = d.id;
        DELETE FROM @extschema@.steadytext_derivations WHERE id = d.id;
        RAISE NOTICE 'pg_steadytext dropped the derivation of column "%" of %, dropped with its table',
            d.destination, d.object_identity;
    END LOOP;
    -- a chunked embedding whose table of chunks was dropped (its source still there) is disabled
    FOR dd IN
        SELECT x.* FROM @extschema@.steadytext_derivations x
        JOIN pg_event_trigger_dropped_objects() o
          ON o.classid = 'pg_class'::regclass AND o.objid = x.chunks::oid AND o.objsubid = 0
        WHERE x.state <> 'disabled'
        ORDER BY x.id
    LOOP
        PERFORM @extschema@.steadytext_derivation_disable(dd, format('its table of chunks "%s" was dropped', dd.destination));
    END LOOP;
END
$$;

CREATE EVENT TRIGGER steadytext_derivation_alter ON ddl_command_end WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION steadytext_derivation_after_alter();
CREATE EVENT TRIGGER steadytext_derivation_drop ON sql_drop
    EXECUTE FUNCTION steadytext_derivation_after_drop();

-- What every derivation the current role may see stands at: rows in sync, pending (a request
-- under way, a change recorded and not yet taken, or a change not yet enqueued: paused, or
-- waiting for a walk), failed (with the last error), the lag (age of the oldest change not yet
-- derived), and whether a walk is under way. A row with a recorded change counts as pending,
-- whatever its bookkeeping said before the change.
CREATE VIEW steadytext_derivation_status WITH (security_invoker = true) AS
SELECT d.id, d.source, d.destination, d.function_name AS kind, d.input, d.declarer, d.state,
       d.disabled_reason,
       coalesce(r.total, 0) + c.changed - c.known AS rows_total,
       coalesce(r.in_sync, 0) - c.in_sync AS rows_in_sync,
       coalesce(r.pending, 0) - c.pending + c.changed AS rows_pending,
       coalesce(r.failed, 0) - c.failed AS rows_failed,
       r.last_error,
       w.oldest AS oldest_pending_change,
       CASE WHEN w.oldest IS NULL THEN interval '0' ELSE now() - w.oldest END AS lag,
       d.walking AND d.state = 'active' AS backfilling
FROM @extschema@.steadytext_derivations d
LEFT JOIN LATERAL (
    SELECT count(*) AS total,
           count(*) FILTER (WHERE s.input_hash IS NOT DISTINCT FROM s.derived_hash
                              AND s.derived_epoch = d.epoch) AS in_sync,
           count(*) FILTER (WHERE s.error IS NULL AND NOT (s.input_hash IS NOT DISTINCT FROM s.derived_hash
                                                         AND s.derived_epoch = d.epoch)) AS pending,
           count(*) FILTER (WHERE s.error IS NOT NULL) AS failed,
           (array_agg(s.error ORDER BY s.changed_at DESC) FILTER (WHERE s.error IS NOT NULL))[1] AS last_error,
           min(s.changed_at) FILTER (WHERE s.error IS NULL AND NOT (s.input_hash IS NOT DISTINCT FROM s.derived_hash
                                                                  AND s.derived_epoch = d.epoch)) AS oldest_change
    FROM @extschema@.steadytext_derivation_rows s
    WHERE s.derivation_id = d.id
) r ON true
CROSS JOIN LATERAL (
    -- the rows with recorded changes (few: workers take them at once), and how the bookkeeping
    -- of those it knows counted them
    SELECT count(*) AS changed,
           count(*) FILTER (WHERE s.source_key IS NOT NULL) AS known,
           count(*) FILTER (WHERE s.input_hash IS NOT DISTINCT FROM s.derived_hash
                              AND s.derived_epoch = d.epoch) AS in_sync,
           count(*) FILTER (WHERE s.source_key IS NOT NULL AND s.error IS NULL
                              AND NOT (s.input_hash IS NOT DISTINCT FROM s.derived_hash
                                       AND s.derived_epoch = d.epoch)) AS pending,
           count(*) FILTER (WHERE s.error IS NOT NULL) AS failed,
           min(x.first_change) AS oldest
    FROM (SELECT k.source_key, min(k.changed_at) AS first_change
          FROM @extschema@.steadytext_derivation_changes k
          WHERE k.derivation_id = d.id
          GROUP BY k.source_key) x
    LEFT JOIN @extschema@.steadytext_derivation_rows s
           ON s.derivation_id = d.id AND s.source_key = x.source_key
) c
CROSS JOIN LATERAL (
    -- rows a walk has still to reach count from when the walk began
    SELECT CASE WHEN d.walking AND d.state = 'active' THEN least(r.oldest_change, c.oldest, d.walk_since)
                ELSE least(r.oldest_change, c.oldest) END AS oldest
) w;

COMMENT ON VIEW steadytext_derivation_status IS
    'pg_steadytext derivations the current role may see, with how many rows are in sync, pending and failed';

REVOKE ALL ON steadytext_derivation_status FROM PUBLIC;
GRANT SELECT ON steadytext_derivation_status TO PUBLIC;

-- Waits until the derivation of `destination` on `source` has every row in sync (nothing
-- pending, nothing walking; rows that failed for good count as settled) and returns true, or
-- raises 55000 after timeout_seconds. For scripts and tests that need a derivation caught up
-- with changes they committed; it looks every 50 ms.
CREATE FUNCTION steadytext_derivation_wait(source regclass, destination text,
                                           timeout_seconds integer DEFAULT 30)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    deadline timestamptz;
    d record;
    st record;
    -- this transaction's id as a row's xmin shows it (NULL: none assigned, nothing written)
    mine text := (pg_current_xact_id_if_assigned()::text::numeric % 4294967296)::text;
BEGIN
    IF source IS NULL OR destination IS NULL OR timeout_seconds IS NULL THEN
        RAISE EXCEPTION 'source, destination and timeout_seconds must not be null' USING ERRCODE = '22004';
    END IF;
    IF timeout_seconds < 0 THEN
        RAISE EXCEPTION 'timeout_seconds must not be negative, got %', timeout_seconds USING ERRCODE = '22023';
    END IF;
    -- the workers see a declaration or a change only once its transaction commits: waiting in
    -- that transaction would wait out the whole timeout for nothing
    IF mine IS NOT NULL AND EXISTS (
        SELECT FROM @extschema@.steadytext_derivations x
        WHERE x.source = steadytext_derivation_wait.source
          AND x.destination = steadytext_derivation_wait.destination
          AND (x.xmin::text = mine
               OR EXISTS (SELECT FROM @extschema@.steadytext_derivation_rows r
                          WHERE r.derivation_id = x.id AND r.xmin::text = mine)
               OR EXISTS (SELECT FROM @extschema@.steadytext_derivation_changes c
                          WHERE c.derivation_id = x.id AND c.xmin::text = mine))) THEN
        RAISE EXCEPTION 'cannot wait for the derivation of column "%" of % in the transaction that declared or changed it',
            destination, source
            USING ERRCODE = '55000', DETAIL = 'Workers see its changes only once this transaction commits.',
                  HINT = 'commit, then call steadytext_derivation_wait';
    END IF;
    deadline := clock_timestamp() + make_interval(secs => timeout_seconds);
    LOOP
        SELECT x.id, x.state, x.walking INTO d
        FROM @extschema@.steadytext_derivations x
        WHERE x.source = steadytext_derivation_wait.source
          AND x.destination = steadytext_derivation_wait.destination;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'column "%" of % is not a derivation''s destination', destination, source
                USING ERRCODE = '42704';
        END IF;
        IF d.state <> 'active' THEN
            RAISE EXCEPTION 'the derivation of column "%" of % is %', destination, source, d.state
                USING ERRCODE = '55000';
        END IF;
        -- while it walks, has a request under way or a change not yet taken (each found
        -- through an index) it is not settled; the status view, which counts over all of its
        -- rows, is read only when none is the case (or to report the timeout), so that waiting
        -- on a large backfill does not take CPU from the workers
        IF (d.walking OR EXISTS (SELECT FROM @extschema@.steadytext_derivation_rows r
                                 WHERE r.derivation_id = d.id AND r.request_id IS NOT NULL)
                      OR EXISTS (SELECT FROM @extschema@.steadytext_derivation_changes c
                                 WHERE c.derivation_id = d.id))
           AND clock_timestamp() < deadline THEN
            PERFORM pg_sleep(0.05);
            CONTINUE;
        END IF;
        SELECT s.rows_pending, s.backfilling INTO st
        FROM @extschema@.steadytext_derivation_status s WHERE s.id = d.id;
        IF st.rows_pending = 0 AND NOT st.backfilling THEN
            RETURN true;
        END IF;
        IF clock_timestamp() >= deadline THEN
            RAISE EXCEPTION 'timed out after % s waiting for the derivation of column "%" of % (% rows pending)',
                timeout_seconds, destination, source, st.rows_pending
                USING ERRCODE = '55000', HINT = 'is a steadytext worker running? raise timeout_seconds to wait longer';
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION
    steadytext_derivation_run_as(oid, text, jsonb, oid, text),
    steadytext_derivation_written_column(oid),
    steadytext_derivation_check_request(text, jsonb),
    steadytext_derivation_key_sql(steadytext_derivations),
    steadytext_derivation_columns_sql(name[], text),
    steadytext_derivation_key_match_sql(steadytext_derivations, text),
    steadytext_derivation_key_typed_sql(steadytext_derivations, text),
    steadytext_derivation_key_columns_sql(steadytext_derivations),
    steadytext_derivation_defer(steadytext_derivations, jsonb),
    steadytext_derivation_statement_limit(),
    steadytext_derivation_input_sql(steadytext_derivations),
    steadytext_derivation_value_sql(steadytext_derivations, text),
    steadytext_derivation_enqueue(steadytext_derivations, jsonb, boolean),
    steadytext_derivation_take_changes(steadytext_derivations, integer),
    steadytext_derivation_evaluate_keys(steadytext_derivations, jsonb),
    steadytext_derivation_forget(steadytext_derivations, jsonb),
    steadytext_derivation_for_trigger(text, oid),
    steadytext_derivation_after_insert(),
    steadytext_derivation_after_update(),
    steadytext_derivation_other_columns(oid, name[]),
    steadytext_derivation_after_delete(),
    steadytext_derivation_after_truncate(),
    steadytext_derivation_write_rows(steadytext_derivations, jsonb),
    steadytext_derivation_write_back(uuid[]),
    steadytext_derivation_request_ended(uuid, text),
    steadytext_derivation_walk(integer),
    steadytext_derivation_declare(regrole, regclass, name, text, name[], text, jsonb),
    steadytext_derivation_drop_triggers(steadytext_derivations),
    steadytext_derivation_cancel_under_way(bigint),
    steadytext_derivation_disable(steadytext_derivations, text),
    steadytext_derivation_after_alter(),
    steadytext_derivation_after_drop(),
    steadytext_derivation_manage(regrole, regclass, name, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    steadytext_derivation_write_back(uuid[]),
    steadytext_derivation_request_ended(uuid, text),
    steadytext_derivation_walk(integer)
TO steadytext_worker;

-- v0.2.0/derivation_completion.sql: the transitions that end a request, aware of derivations
-- Stores the results of several requests worker_id is processing in one statement (a worker
-- completes the requests that finished together at once): results[i] is request_ids[i]'s. Each
-- is written only while the request is processing under worker_id's lease (cancelled, rescued
-- or reclaimed ones are left as they are) and announced with NOTIFY steadytext_completed.
-- A derivation's result is written into its source row in the same transaction
-- (steadytext_derivation_write_back); a request whose row another transaction holds goes back to
-- pending (due 100 ms later: recomputing it is a cache hit) and counts as not written.
-- Returns, in the order given, whether each result was written. At most 10000 requests per
-- call, each id once.
CREATE OR REPLACE FUNCTION steadytext_queue_complete_many(worker_id text, request_ids uuid[], results text[])
RETURNS boolean[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
-- (every statement below finds its rows through request_id's index, whatever the number of
-- requests; left to choose, the plan cache planned some of them again at every call)
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    written uuid[] := '{}';
    derived uuid[] := '{}';
    busy uuid[] := '{}';
    job record;
BEGIN
    IF request_ids IS NULL OR results IS NULL THEN
        RAISE EXCEPTION 'request_ids and results must not be null' USING ERRCODE = '22004';
    END IF;
    IF cardinality(request_ids) <> cardinality(results) THEN
        RAISE EXCEPTION 'request_ids and results must have the same length, got % and %',
            cardinality(request_ids), cardinality(results) USING ERRCODE = '22023';
    END IF;
    IF cardinality(request_ids) > 10000 THEN
        RAISE EXCEPTION 'at most 10000 requests per call, got %', cardinality(request_ids)
            USING ERRCODE = '22023';
    END IF;
    IF array_position(request_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'request_ids[%] must not be null', array_position(request_ids, NULL)
            USING ERRCODE = '22004';
    END IF;
    IF array_position(results, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'results[%] must not be null', array_position(results, NULL)
            USING ERRCODE = '22004';
    END IF;
    IF (SELECT count(DISTINCT i) FROM unnest(request_ids) AS i) <> cardinality(request_ids) THEN
        RAISE EXCEPTION 'request_ids must not repeat an id' USING ERRCODE = '22023';
    END IF;
    FOR job IN
        UPDATE @extschema@.steadytext_queue q
        SET status = 'completed', result = r.res, error = NULL, completed_at = now(),
            lease_expires_at = NULL
        FROM unnest(request_ids, results) AS r(rid, res)
        WHERE q.request_id = r.rid AND q.status = 'processing'
          AND q.worker_id = steadytext_queue_complete_many.worker_id
        RETURNING q.request_id AS rid, q.derivation_id IS NOT NULL AS derives
    LOOP
        written := written || job.rid;
        IF job.derives THEN
            derived := derived || job.rid;
        END IF;
    END LOOP;
    IF cardinality(derived) > 0 THEN
        busy := @extschema@.steadytext_derivation_write_back(derived);
    END IF;
    IF cardinality(busy) > 0 THEN
        UPDATE @extschema@.steadytext_queue
        SET status = 'pending', result = NULL, completed_at = NULL, worker_id = NULL,
            next_attempt_at = now() + interval '100 milliseconds'
        WHERE request_id = ANY(busy);
    END IF;
    PERFORM @extschema@.steadytext_queue_notify_completed(q.request_id, q.function_name, 'completed')
    FROM @extschema@.steadytext_queue q
    WHERE q.request_id = ANY(written) AND q.request_id <> ALL(busy);
    written := ARRAY(SELECT i FROM unnest(written) AS i WHERE i <> ALL(busy));
    RETURN ARRAY(SELECT i = ANY(written) FROM unnest(request_ids) WITH ORDINALITY AS t(i, n)
                 ORDER BY n);
END
$$;

-- Records that an attempt of worker_id failed with `error`. While retries are left (see
-- steadytext_queue_may_retry) and the error is retryable, the request goes back to pending, not
-- claimable before now() + backoff * 2^n (n = retries so far, capped at one hour); otherwise it
-- fails for good (status 'failed', failed_at; a derivation's row shows the error). Returns the new status, or NULL if worker_id does
-- not hold the request's lease.
CREATE OR REPLACE FUNCTION steadytext_queue_fail(request_id uuid, worker_id text, error text,
                                      retryable boolean DEFAULT true,
                                      backoff interval DEFAULT '1 second',
                                      retry_limit integer DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job @extschema@.steadytext_queue;
BEGIN
    IF steadytext_queue_fail.error IS NULL OR steadytext_queue_fail.error = '' THEN
        RAISE EXCEPTION 'error must not be null or empty' USING ERRCODE = '22004';
    END IF;
    IF retryable IS NULL OR backoff IS NULL THEN
        RAISE EXCEPTION 'retryable and backoff must not be null' USING ERRCODE = '22004';
    END IF;
    IF backoff < interval '0' THEN
        RAISE EXCEPTION 'backoff must not be negative, got %', backoff USING ERRCODE = '22023';
    END IF;
    IF retry_limit < 0 THEN
        RAISE EXCEPTION 'retry_limit must not be negative, got %', retry_limit
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO job FROM @extschema@.steadytext_queue
    WHERE request_id = steadytext_queue_fail.request_id AND status = 'processing'
      AND worker_id = steadytext_queue_fail.worker_id
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF retryable AND @extschema@.steadytext_queue_may_retry(job.retry_count, job.max_retries, retry_limit) THEN
        UPDATE @extschema@.steadytext_queue
        SET status = 'pending', error = steadytext_queue_fail.error, retry_count = retry_count + 1,
            worker_id = NULL, lease_expires_at = NULL,
            next_attempt_at = now() + least(backoff * power(2, job.retry_count), interval '1 hour')
        WHERE id = job.id;
        RETURN 'pending';
    END IF;
    UPDATE @extschema@.steadytext_queue
    SET status = 'failed', error = steadytext_queue_fail.error, failed_at = now(),
        lease_expires_at = NULL
    WHERE id = job.id;
    IF job.derivation_id IS NOT NULL THEN
        PERFORM @extschema@.steadytext_derivation_request_ended(job.request_id, steadytext_queue_fail.error);
    END IF;
    PERFORM @extschema@.steadytext_queue_notify_completed(job.request_id, job.function_name, 'failed');
    RETURN 'failed';
END
$$;

-- Puts requests whose lease expired (their worker died or hung) back to pending, counting a retry
-- and applying the same retry rule and backoff as steadytext_queue_fail (retry_limit is the
-- rescuing worker's); those out of retries fail for good. Returns how many requests were rescued
-- or failed.
CREATE OR REPLACE FUNCTION steadytext_queue_rescue_expired(backoff interval DEFAULT '1 second',
                                                retry_limit integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    job record;
    n integer := 0;
BEGIN
    IF backoff IS NULL THEN
        RAISE EXCEPTION 'backoff must not be null' USING ERRCODE = '22004';
    END IF;
    IF backoff < interval '0' THEN
        RAISE EXCEPTION 'backoff must not be negative, got %', backoff USING ERRCODE = '22023';
    END IF;
    IF retry_limit < 0 THEN
        RAISE EXCEPTION 'retry_limit must not be negative, got %', retry_limit
            USING ERRCODE = '22023';
    END IF;
    FOR job IN
        SELECT id, request_id, function_name, worker_id AS w, retry_count AS retries, max_retries,
               derivation_id
        FROM @extschema@.steadytext_queue
        WHERE status = 'processing' AND lease_expires_at < now()
        ORDER BY id
        FOR UPDATE SKIP LOCKED
    LOOP
        n := n + 1;
        IF @extschema@.steadytext_queue_may_retry(job.retries, job.max_retries, retry_limit) THEN
            UPDATE @extschema@.steadytext_queue
            SET status = 'pending', retry_count = retry_count + 1, worker_id = NULL,
                lease_expires_at = NULL,
                error = format('lease of worker %s expired', job.w),
                next_attempt_at = now() + least(backoff * power(2, job.retries), interval '1 hour')
            WHERE id = job.id;
        ELSE
            UPDATE @extschema@.steadytext_queue
            SET status = 'failed', failed_at = now(), lease_expires_at = NULL,
                error = format('lease of worker %s expired after %s retries', job.w, job.retries)
            WHERE id = job.id;
            IF job.derivation_id IS NOT NULL THEN
                PERFORM @extschema@.steadytext_derivation_request_ended(job.request_id,
                    format('lease of worker %s expired after %s retries', job.w, job.retries));
            END IF;
            PERFORM @extschema@.steadytext_queue_notify_completed(job.request_id, job.function_name, 'failed');
        END IF;
    END LOOP;
    RETURN n;
END
$$;

-- Cancels a pending or processing request. Returns true if it was and now is cancelled, false if
-- it had already finished (or is unknown). A cancelled request's result is never written
-- afterwards: steadytext_queue_complete refuses it (a derivation's row shows 'cancelled'). Workers may cancel any request; an ordinary
-- role cancels its own through steadytext_cancel_async.
CREATE OR REPLACE FUNCTION steadytext_queue_cancel(request_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    fn text;
    derives boolean;
BEGIN
    UPDATE @extschema@.steadytext_queue
    SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL
    WHERE request_id = steadytext_queue_cancel.request_id AND status IN ('pending', 'processing')
    RETURNING function_name, derivation_id IS NOT NULL INTO fn, derives;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF derives THEN
        PERFORM @extschema@.steadytext_derivation_request_ended(steadytext_queue_cancel.request_id, 'cancelled');
    END IF;
    PERFORM @extschema@.steadytext_queue_notify_completed(steadytext_queue_cancel.request_id, fn, 'cancelled');
    RETURN true;
END
$$;

-- v0.2.0/dashboard.sql: the workers' slots and models, the retry of a failed request
-- Workers report their slots and their models with each heartbeat (NULL from workers older than
-- 0.2.0, which call the function with five arguments).
ALTER TABLE @extschema@.steadytext_workers
    ADD COLUMN concurrency integer CHECK (concurrency > 0),
    ADD COLUMN models text;

COMMENT ON COLUMN @extschema@.steadytext_workers.concurrency IS
    'requests the worker processes at once, as its last heartbeat said';
COMMENT ON COLUMN @extschema@.steadytext_workers.models IS
    'the models its engine loaded, as its last heartbeat said';

-- Records that worker_id is alive: upserts its steadytext_workers row (with its slots and models
-- when given) and extends the leases of the requests it is processing by lease. Returns how
-- many leases it extended. Replaces 0.1.0's five-argument version, whose calls it still takes.
DROP FUNCTION @extschema@.steadytext_worker_heartbeat(text, text, integer, interval, text);
CREATE FUNCTION steadytext_worker_heartbeat(worker_id text, host text, pid integer,
                                            lease interval DEFAULT '300 seconds',
                                            status text DEFAULT 'running',
                                            concurrency integer DEFAULT NULL,
                                            models text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    extended integer;
BEGIN
    IF steadytext_worker_heartbeat.worker_id IS NULL OR steadytext_worker_heartbeat.worker_id = '' THEN
        RAISE EXCEPTION 'worker_id must not be null or empty' USING ERRCODE = '22023';
    END IF;
    IF lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION 'lease must be a positive interval, got %', lease USING ERRCODE = '22023';
    END IF;
    IF host IS NULL OR pid IS NULL OR status IS NULL THEN
        RAISE EXCEPTION 'host, pid and status must not be null' USING ERRCODE = '22004';
    END IF;
    IF status NOT IN ('running', 'stopping', 'stopped') THEN
        RAISE EXCEPTION 'status must be running, stopping or stopped, got %', status
            USING ERRCODE = '22023';
    END IF;
    IF steadytext_worker_heartbeat.concurrency <= 0 THEN
        RAISE EXCEPTION 'concurrency must be positive, got %', steadytext_worker_heartbeat.concurrency
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO @extschema@.steadytext_workers AS w (worker_id, host, pid, status, concurrency, models)
    VALUES (steadytext_worker_heartbeat.worker_id, steadytext_worker_heartbeat.host,
            steadytext_worker_heartbeat.pid, steadytext_worker_heartbeat.status,
            steadytext_worker_heartbeat.concurrency, steadytext_worker_heartbeat.models)
    ON CONFLICT (worker_id) DO UPDATE
    SET host = EXCLUDED.host, pid = EXCLUDED.pid, status = EXCLUDED.status,
        concurrency = EXCLUDED.concurrency, models = EXCLUDED.models,
        last_heartbeat = now(),
        -- same id, different process: a restart
        started_at = CASE WHEN (w.host, w.pid) IS DISTINCT FROM (EXCLUDED.host, EXCLUDED.pid)
                          THEN now() ELSE w.started_at END;
    UPDATE @extschema@.steadytext_queue
    SET lease_expires_at = now() + lease
    WHERE status = 'processing' AND worker_id = steadytext_worker_heartbeat.worker_id;
    GET DIAGNOSTICS extended = ROW_COUNT;
    RETURN extended;
END
$$;

-- Makes a derivation's request that steadytext_queue_retry put back to pending serve its row
-- again, if the row still waits for that input. SECURITY DEFINER: the bookkeeping is the queue
-- owner's; steadytext_worker only, like steadytext_derivation_request_ended.
CREATE FUNCTION steadytext_derivation_request_retried(request_id uuid)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE @extschema@.steadytext_derivation_rows s
    SET request_id = $1, error = NULL
    FROM @extschema@.steadytext_queue q
    WHERE q.request_id = $1 AND q.status = 'pending' AND s.derivation_id = q.derivation_id
      AND s.source_key = q.source_key AND s.input_hash = q.input_hash AND s.request_id IS NULL;
$$;

-- Puts a request that failed for good back to pending, due now, with its retries counted from
-- zero again (its last error stays until it completes). A derivation's request serves its row
-- again if the row still waits for that input. Returns true if it had failed and is pending
-- now, false otherwise (pending, processing, completed, cancelled or unknown). For operators:
-- the dashboard's retry; like steadytext_queue_cancel, steadytext_worker only.
CREATE FUNCTION steadytext_queue_retry(request_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job record;
BEGIN
    UPDATE @extschema@.steadytext_queue
    SET status = 'pending', failed_at = NULL, worker_id = NULL, retry_count = 0,
        next_attempt_at = now()
    WHERE request_id = steadytext_queue_retry.request_id AND status = 'failed'
    RETURNING derivation_id INTO job;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF job.derivation_id IS NOT NULL THEN
        PERFORM @extschema@.steadytext_derivation_request_retried(steadytext_queue_retry.request_id);
    END IF;
    -- an announcement of one request (see steadytext_api::notifications::Announcement)
    PERFORM pg_notify('steadytext_jobs', format('%s:1', floor(random() * 1e9)::bigint));
    RETURN true;
END
$$;

-- Operators see every derivation: the dashboard runs as a member of steadytext_worker, which
-- already reads every request (their inputs among them); declarers see their own.
CREATE POLICY steadytext_derivations_worker_read ON @extschema@.steadytext_derivations
    FOR SELECT TO steadytext_worker USING (true);

-- Pauses or resumes derivation derivation_id on its declarer's behalf, as
-- steadytext_derivation_pause/_resume would for the declarer (the dashboard's switch, with
-- --ui-actions). SECURITY DEFINER: it acts as the queue's owner, checks nothing the declarer's
-- own call would not; steadytext_worker only.
CREATE FUNCTION steadytext_derivation_operate(derivation_id bigint, action text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d @extschema@.steadytext_derivations;
BEGIN
    IF action IS NULL OR action NOT IN ('pause', 'resume') THEN
        RAISE EXCEPTION 'action must be pause or resume, got %', coalesce(action, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO d FROM @extschema@.steadytext_derivations x
    WHERE x.id = steadytext_derivation_operate.derivation_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no derivation %', coalesce(derivation_id::text, 'NULL')
            USING ERRCODE = '42704';
    END IF;
    RETURN @extschema@.steadytext_derivation_manage(d.declarer, d.source, d.destination, action);
END
$$;

REVOKE ALL ON FUNCTION
    steadytext_worker_heartbeat(text, text, integer, interval, text, integer, text),
    steadytext_derivation_request_retried(uuid),
    steadytext_queue_retry(uuid),
    steadytext_derivation_operate(bigint, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    steadytext_worker_heartbeat(text, text, integer, interval, text, integer, text),
    steadytext_derivation_request_retried(uuid),
    steadytext_queue_retry(uuid),
    steadytext_derivation_operate(bigint, text)
TO steadytext_worker;

-- the user-facing derivation functions (Rust, src/derivations.rs)
-- steadytext_derive (Rust, as cargo pgrx schema writes it)
CREATE  FUNCTION "steadytext_derive"(
	"source" regclass, /* Option < PgRelation > */
	"destination" TEXT, /* Option < & str > */
	"input" TEXT, /* Option < & str > */
	"kind" TEXT DEFAULT 'embed', /* Option < & str > */
	"options" jsonb DEFAULT '{}' /* Option < JsonB > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'steadytext_derive_wrapper';
-- steadytext_derivation_pause (Rust, as cargo pgrx schema writes it)
CREATE  FUNCTION "steadytext_derivation_pause"(
	"source" regclass, /* Option < PgRelation > */
	"destination" TEXT /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'steadytext_derivation_pause_wrapper';
-- steadytext_derivation_resume (Rust, as cargo pgrx schema writes it)
CREATE  FUNCTION "steadytext_derivation_resume"(
	"source" regclass, /* Option < PgRelation > */
	"destination" TEXT /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'steadytext_derivation_resume_wrapper';
-- steadytext_derivation_rederive (Rust, as cargo pgrx schema writes it)
CREATE  FUNCTION "steadytext_derivation_rederive"(
	"source" regclass, /* Option < PgRelation > */
	"destination" TEXT /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'steadytext_derivation_rederive_wrapper';
-- steadytext_derivation_drop (Rust, as cargo pgrx schema writes it)
CREATE  FUNCTION "steadytext_derivation_drop"(
	"source" regclass, /* Option < PgRelation > */
	"destination" TEXT /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'steadytext_derivation_drop_wrapper';

-- v0.2.0/claim_costs.sql: a claim fills a worker's free capacity, embeddings costing less
DROP FUNCTION @extschema@.steadytext_queue_claim(text, integer, interval);

-- Claims due pending requests, highest priority first, then oldest, skipping rows other claimers
-- hold, while their costs add up to batch_size: an embedding ('embed') costs 1 and any other
-- request other_cost (default 1: batch_size requests). The last one claimed may go over by less
-- than its own cost (with batch_size 1 and other_cost 2, one request of any kind). Each gets
-- status 'processing' and a lease of `lease` for worker_id (workers pass
-- steadytext.worker_timeout). Returns the claimed rows in claim order.
CREATE FUNCTION steadytext_queue_claim(worker_id text, batch_size integer DEFAULT 1,
                                       lease interval DEFAULT '300 seconds',
                                       other_cost integer DEFAULT 1)
RETURNS SETOF @extschema@.steadytext_queue
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF steadytext_queue_claim.worker_id IS NULL OR steadytext_queue_claim.worker_id = '' THEN
        RAISE EXCEPTION 'worker_id must not be null or empty' USING ERRCODE = '22023';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1, got %', batch_size USING ERRCODE = '22023';
    END IF;
    IF lease IS NULL OR lease <= interval '0' THEN
        RAISE EXCEPTION 'lease must be a positive interval, got %', lease USING ERRCODE = '22023';
    END IF;
    IF other_cost IS NULL OR other_cost < 1 OR other_cost > 1000 THEN
        RAISE EXCEPTION 'other_cost must be between 1 and 1000, got %', other_cost
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH picked AS (
        -- (each costs at least 1: no more than batch_size can be claimed)
        SELECT q.id, q.priority, q.created_at,
               CASE WHEN q.function_name = 'embed' THEN 1 ELSE other_cost END AS cost
        FROM @extschema@.steadytext_queue q
        WHERE q.status = 'pending' AND q.next_attempt_at <= now()
        ORDER BY q.priority DESC, q.created_at, q.id
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    ), fitting AS (
        -- those whose predecessors left room; the rest are unlocked when the statement ends
        SELECT f.id FROM (
            SELECT p.id, p.cost,
                   sum(p.cost) OVER (ORDER BY p.priority DESC, p.created_at, p.id) AS used
            FROM picked p) AS f
        WHERE f.used - f.cost < batch_size
    ), claimed AS (
        UPDATE @extschema@.steadytext_queue q
        SET status = 'processing', worker_id = steadytext_queue_claim.worker_id,
            lease_expires_at = now() + lease, started_at = now()
        FROM fitting WHERE q.id = fitting.id
        RETURNING q.*
    )
    SELECT * FROM claimed ORDER BY priority DESC, created_at, id;
END
$$;

REVOKE ALL ON FUNCTION steadytext_queue_claim(text, integer, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION steadytext_queue_claim(text, integer, interval, integer) TO steadytext_worker;
