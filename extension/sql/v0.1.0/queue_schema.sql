-- pg_steadytext 0.1.0: the asynchronous request queue, its workers, and who may touch what.
-- Pulled into the generated pg_steadytext--0.1.0.sql by extension_sql_file! (src/queue_schema.rs).
-- Released versions are never edited: later changes go into pg_steadytext--A--B.sql upgrade
-- scripts in extension/sql/ (see extension/sql/README.md).

-- Role of the queue workers (`steadytext worker` / `steadytext serve` connect as a member of it).
-- Roles are cluster-wide, so it is created only if missing and is left behind by DROP EXTENSION.
-- Its members may process (and so read and complete) every role's requests: an existing role of
-- that name is adopted only if it is the one an earlier installation created (marked by its
-- comment), never a role someone else made to be granted that power.
DO $$
DECLARE
    marker constant text := 'pg_steadytext queue workers (created by the extension)';
    r record;
BEGIN
    SELECT a.oid, a.rolcanlogin, a.rolsuper, a.rolcreaterole, a.rolcreatedb, a.rolreplication,
           a.rolbypassrls, pg_catalog.shobj_description(a.oid, 'pg_authid') AS note
    INTO r FROM pg_catalog.pg_roles a WHERE a.rolname = 'steadytext_worker';
    IF NOT FOUND THEN
        CREATE ROLE steadytext_worker NOLOGIN;
        EXECUTE pg_catalog.format('COMMENT ON ROLE steadytext_worker IS %L', marker);
    ELSIF r.note IS DISTINCT FROM marker OR r.rolcanlogin OR r.rolsuper OR r.rolcreaterole
          OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls THEN
        RAISE EXCEPTION 'role "steadytext_worker" already exists and was not created by pg_steadytext'
            USING ERRCODE = 'duplicate_object',
                  DETAIL = 'Its members would be able to read and complete every role''s requests.',
                  HINT = pg_catalog.format('Drop or rename that role, or, if it is meant to be the '
                      'workers'' role (NOLOGIN, no other attributes), mark it with COMMENT ON ROLE '
                      'steadytext_worker IS %L.', marker);
    END IF;
END
$$;

-- One row per asynchronous request. Life cycle:
--   pending ──claim──► processing ──complete──► completed
--      ▲                  │ ├──fail (retries left) / lease expired──► pending (later)
--      │                  │ └──fail (no retries left)──► failed
--      └──────────────────┴──cancel (from pending or processing)──► cancelled
CREATE TABLE steadytext_queue (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id       uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid() UNIQUE,
    function_name    text NOT NULL CHECK (function_name IN (
                         'generate', 'embed', 'generate_json', 'generate_regex',
                         'generate_choice', 'rerank')),
    -- the call's arguments under their SQL names (prompt, max_tokens, use_cache, seed, ...)
    parameters       jsonb NOT NULL CHECK (pg_catalog.jsonb_typeof(parameters) = 'object'),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN (
                         'pending', 'processing', 'completed', 'failed', 'cancelled')),
    -- higher runs first; the range is steadytext_api::limits::PRIORITY_MIN..=PRIORITY_MAX
    priority         integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    -- the role whose request it is, by oid (a role dropped and created again under the same name
    -- is a new role and does not get the old one's requests); shown and dumped by name
    owner            regrole NOT NULL
                     DEFAULT pg_catalog.to_regrole(pg_catalog.quote_ident(CURRENT_USER)),
    result           text,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    started_at       timestamptz,   -- start of the current (or last) attempt
    completed_at     timestamptz,   -- when it became completed or cancelled
    failed_at        timestamptz,   -- when it failed for good
    retry_count      integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    max_retries      integer NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 100),
    next_attempt_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),   -- retry backoff: not claimed before
    worker_id        text,          -- the worker holding (or that last held) the lease
    lease_expires_at timestamptz,   -- set exactly while processing

    CONSTRAINT steadytext_queue_retries_within_max CHECK (retry_count <= max_retries),
    CONSTRAINT steadytext_queue_lease_iff_processing
        CHECK ((status = 'processing') = (lease_expires_at IS NOT NULL)),
    CONSTRAINT steadytext_queue_processing_state CHECK (status <> 'processing'
        OR (worker_id IS NOT NULL AND started_at IS NOT NULL AND result IS NULL
            AND completed_at IS NULL AND failed_at IS NULL)),
    CONSTRAINT steadytext_queue_pending_state CHECK (status <> 'pending'
        OR (worker_id IS NULL AND result IS NULL AND completed_at IS NULL AND failed_at IS NULL)),
    CONSTRAINT steadytext_queue_completed_state CHECK (status <> 'completed'
        OR (result IS NOT NULL AND completed_at IS NOT NULL AND started_at IS NOT NULL
            AND error IS NULL AND failed_at IS NULL)),
    CONSTRAINT steadytext_queue_failed_state CHECK (status <> 'failed'
        OR (failed_at IS NOT NULL AND error IS NOT NULL AND result IS NULL
            AND completed_at IS NULL)),
    CONSTRAINT steadytext_queue_cancelled_state CHECK (status <> 'cancelled'
        OR (completed_at IS NOT NULL AND result IS NULL AND failed_at IS NULL))
);

COMMENT ON TABLE steadytext_queue IS
    'pg_steadytext asynchronous requests; each role sees only its own rows (row-level security)';

-- claim order: priority DESC, then age (created_at, then insertion order)
CREATE INDEX steadytext_queue_claim_idx
    ON steadytext_queue (priority DESC, created_at, id) WHERE status = 'pending';
-- rescue of expired leases and heartbeat of a worker's jobs
CREATE INDEX steadytext_queue_lease_idx
    ON steadytext_queue (lease_expires_at) WHERE status = 'processing';
CREATE INDEX steadytext_queue_worker_idx
    ON steadytext_queue (worker_id) WHERE status = 'processing';
-- a role's requests (row-level security), and its share of the queue (steadytext.max_queue_size_per_role)
CREATE INDEX steadytext_queue_owner_idx ON steadytext_queue (owner, status, created_at);
-- purge of finished requests, oldest first (steadytext_queue_purge)
CREATE INDEX steadytext_queue_finished_idx
    ON steadytext_queue ((coalesce(completed_at, failed_at)))
    WHERE status IN ('completed', 'failed', 'cancelled');

-- A queue churns: every request is inserted, updated at least twice and finally deleted by the
-- workers' purge (steadytext.queue_retention). Vacuum and analyze it after 1% of its rows (plus
-- 1000) changed instead of the default 20%, so that dead rows are reclaimed while the table is
-- still small and the claim and depth queries do not wade through them.
ALTER TABLE steadytext_queue SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_insert_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01,
    autovacuum_analyze_threshold = 1000
);

-- One row per queue worker process, kept current by steadytext_worker_heartbeat().
CREATE TABLE steadytext_workers (
    worker_id      text PRIMARY KEY CHECK (worker_id <> ''),
    host           text NOT NULL,
    pid            integer NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_heartbeat timestamptz NOT NULL DEFAULT pg_catalog.now(),
    status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'stopping', 'stopped'))
);

COMMENT ON TABLE steadytext_workers IS
    'pg_steadytext queue workers and their last heartbeat';

-- Privileges. Ordinary roles reach the queue only through the extension's functions: they enqueue
-- with the steadytext_*_async functions (which validate the request, apply the queue limits and
-- write the row as the queue's owner, naming the caller as its owner) and cancel with
-- steadytext_cancel_async; they may read their own rows directly (row-level security). Nothing
-- else is granted to them: no INSERT (it would skip validation and the limits), no UPDATE or
-- DELETE (timestamps, results and states are set by the server). steadytext_worker reads and
-- processes every row, through the transition functions in queue_transitions.sql. Who may see the
-- workers (their hosts and process ids): steadytext_worker and pg_monitor.
ALTER TABLE steadytext_queue ENABLE ROW LEVEL SECURITY;

CREATE POLICY steadytext_queue_owner_read ON steadytext_queue
    FOR SELECT USING (owner = (SELECT pg_catalog.to_regrole(pg_catalog.quote_ident(CURRENT_USER))));
CREATE POLICY steadytext_queue_worker_all ON steadytext_queue
    TO steadytext_worker USING (true) WITH CHECK (true);

REVOKE ALL ON steadytext_queue, steadytext_workers FROM PUBLIC;
GRANT SELECT ON steadytext_queue TO PUBLIC;
GRANT SELECT, UPDATE, DELETE ON steadytext_queue TO steadytext_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON steadytext_workers TO steadytext_worker;
GRANT SELECT ON steadytext_workers TO pg_monitor;
