-- pg_steadytext 0.1.0: the asynchronous request queue, its workers, and who may touch what.
-- Pulled into the generated pg_steadytext--0.1.0.sql by extension_sql_file! (src/queue_schema.rs).
-- Released versions are never edited: later changes go into pg_steadytext--A--B.sql upgrade
-- scripts in extension/sql/ (see extension/sql/README.md).

-- Role of the queue workers (`steadytext worker` / `steadytext serve` connect as a member of it).
-- Roles are cluster-wide, so it is created only if missing and is left behind by DROP EXTENSION.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'steadytext_worker') THEN
        CREATE ROLE steadytext_worker NOLOGIN;
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
    request_id       uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    function_name    text NOT NULL CHECK (function_name IN (
                         'generate', 'embed', 'generate_json', 'generate_regex',
                         'generate_choice', 'rerank')),
    -- the call's arguments under their SQL names (prompt, max_tokens, use_cache, seed, ...)
    parameters       jsonb NOT NULL CHECK (jsonb_typeof(parameters) = 'object'),
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN (
                         'pending', 'processing', 'completed', 'failed', 'cancelled')),
    -- higher runs first; the range is steadytext_api::limits::PRIORITY_MIN..=PRIORITY_MAX
    priority         integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    owner            name NOT NULL DEFAULT current_user,
    result           text,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,   -- start of the current (or last) attempt
    completed_at     timestamptz,   -- when it became completed or cancelled
    failed_at        timestamptz,   -- when it failed for good
    retry_count      integer NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    max_retries      integer NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 100),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),   -- retry backoff: not claimed before
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
CREATE INDEX steadytext_queue_owner_idx ON steadytext_queue (owner, created_at);
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
    started_at     timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz NOT NULL DEFAULT now(),
    status         text NOT NULL DEFAULT 'running'
                   CHECK (status IN ('running', 'stopping', 'stopped'))
);

COMMENT ON TABLE steadytext_workers IS
    'pg_steadytext queue workers and their last heartbeat';

-- Privileges. Every role may enqueue (through the steadytext_*_async functions), read and cancel
-- its own requests; steadytext_worker may read and process all of them.
ALTER TABLE steadytext_queue ENABLE ROW LEVEL SECURITY;

CREATE POLICY steadytext_queue_owner_read ON steadytext_queue
    FOR SELECT USING (owner = current_user);
CREATE POLICY steadytext_queue_owner_enqueue ON steadytext_queue
    FOR INSERT WITH CHECK (owner = current_user AND status = 'pending' AND retry_count = 0
                           AND worker_id IS NULL AND lease_expires_at IS NULL);
CREATE POLICY steadytext_queue_owner_cancel ON steadytext_queue
    FOR UPDATE USING (owner = current_user AND status IN ('pending', 'processing'))
    WITH CHECK (owner = current_user AND status = 'cancelled');
CREATE POLICY steadytext_queue_worker_all ON steadytext_queue
    TO steadytext_worker USING (true) WITH CHECK (true);

REVOKE ALL ON steadytext_queue, steadytext_workers FROM PUBLIC;
GRANT SELECT ON steadytext_queue TO PUBLIC;
GRANT INSERT (request_id, function_name, parameters, priority, max_retries)
    ON steadytext_queue TO PUBLIC;
GRANT UPDATE (status, completed_at, lease_expires_at) ON steadytext_queue TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON steadytext_queue TO steadytext_worker;
GRANT SELECT ON steadytext_workers TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON steadytext_workers TO steadytext_worker;
