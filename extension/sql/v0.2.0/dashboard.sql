-- pg_steadytext 0.2.0: what the dashboard (`/ui` of steadytext serve) shows of the workers and
-- the derivations, and the actions it offers (retry a request, pause or resume a derivation). The same statements are in pg_steadytext--0.1.0--0.2.0.sql.

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
