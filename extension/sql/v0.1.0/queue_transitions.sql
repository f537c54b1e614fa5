-- pg_steadytext 0.1.0: the queue's state transitions. Every worker performs each transition only
-- through these functions, so the rules (claim order, leases, retries, refusal after cancel,
-- notifications) live in one place. They run with the caller's rights (SECURITY INVOKER):
-- steadytext_worker's row-level-security policy lets it process every row, and only
-- steadytext_worker (and superusers) may execute them. Ordinary roles reach them only through the
-- extension's user functions (steadytext_cancel_async runs steadytext_queue_cancel as the queue's
-- owner once row-level security has shown the caller the request).
--
-- Like every function of the extension, each pins search_path to pg_catalog, pg_temp and names
-- the extension's own objects as @extschema@.name, so that nothing a role creates in any schema
-- (functions, operators or tables named like the ones called here) is ever run or read in their
-- place (CVE-2018-1058, CVE-2020-14350); extension/tests/security checks it with traps.

-- Sends NOTIFY steadytext_completed with {"request_id", "function", "status"} (never the result:
-- payloads are capped at 8000 bytes), and wakes sessions waiting in steadytext_get_async_result
-- when the transaction commits (through shared memory when the library is preloaded; a no-op
-- otherwise, see docs/async-waits.md).
CREATE FUNCTION steadytext_queue_notify_completed(request_id uuid, function_name text, status text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_notify('steadytext_completed',
                     json_build_object('request_id', $1, 'function', $2, 'status', $3)::text);
    SELECT @extschema@.steadytext_queue_wake_waiters();
$$;

-- Claims up to batch_size due pending requests, highest priority first, then oldest, skipping rows
-- other claimers hold; each gets status 'processing' and a lease of `lease` for worker_id
-- (workers pass steadytext.worker_timeout). Returns the claimed rows in claim order.
CREATE FUNCTION steadytext_queue_claim(worker_id text, batch_size integer DEFAULT 1,
                                       lease interval DEFAULT '300 seconds')
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
    RETURN QUERY
    WITH picked AS (
        SELECT q.id FROM @extschema@.steadytext_queue q
        WHERE q.status = 'pending' AND q.next_attempt_at <= now()
        ORDER BY q.priority DESC, q.created_at, q.id
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE @extschema@.steadytext_queue q
        SET status = 'processing', worker_id = steadytext_queue_claim.worker_id,
            lease_expires_at = now() + lease, started_at = now()
        FROM picked WHERE q.id = picked.id
        RETURNING q.*
    )
    SELECT * FROM claimed ORDER BY priority DESC, created_at, id;
END
$$;

-- Records that worker_id is alive: upserts its steadytext_workers row and extends the leases of
-- the requests it is processing to now() + lease. Returns how many leases were extended.
CREATE FUNCTION steadytext_worker_heartbeat(worker_id text, host text, pid integer,
                                            lease interval DEFAULT '300 seconds',
                                            status text DEFAULT 'running')
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
    INSERT INTO @extschema@.steadytext_workers AS w (worker_id, host, pid, status)
    VALUES (steadytext_worker_heartbeat.worker_id, steadytext_worker_heartbeat.host,
            steadytext_worker_heartbeat.pid, steadytext_worker_heartbeat.status)
    ON CONFLICT (worker_id) DO UPDATE
    SET host = EXCLUDED.host, pid = EXCLUDED.pid, status = EXCLUDED.status,
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

-- Stores the result of a request worker_id is processing. Returns false, writing nothing, if the
-- request is not processing under worker_id's lease any more (cancelled, rescued, reclaimed).
-- The one-request form of steadytext_queue_complete_many (same rule).
CREATE FUNCTION steadytext_queue_complete(request_id uuid, worker_id text, result text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF result IS NULL THEN
        RAISE EXCEPTION 'result must not be null' USING ERRCODE = '22004';
    END IF;
    IF request_id IS NULL THEN
        RETURN false;
    END IF;
    RETURN (@extschema@.steadytext_queue_complete_many(worker_id, ARRAY[request_id], ARRAY[result]))[1];
END
$$;

-- Stores the results of several requests worker_id is processing in one statement (a worker
-- completes the requests that finished together at once): results[i] is request_ids[i]'s. Each
-- is written only while the request is processing under worker_id's lease (cancelled, rescued
-- or reclaimed ones are left as they are) and announced with NOTIFY steadytext_completed.
-- Returns, in the order given, whether each result was written. At most 10000 requests per
-- call, each id once.
CREATE FUNCTION steadytext_queue_complete_many(worker_id text, request_ids uuid[], results text[])
RETURNS boolean[]
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    written uuid[] := '{}';
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
        RETURNING q.request_id AS rid, q.function_name AS fn
    LOOP
        PERFORM @extschema@.steadytext_queue_notify_completed(job.rid, job.fn, 'completed');
        written := written || job.rid;
    END LOOP;
    RETURN ARRAY(SELECT i = ANY(written) FROM unnest(request_ids) WITH ORDINALITY AS t(i, n)
                 ORDER BY n);
END
$$;

-- Whether a request that has already been retried `retries` times may be retried again: below
-- its own max_retries (recorded at enqueue) and below the worker's retry_limit (its
-- --max-retries / steadytext.max_retries; NULL: no limit of its own). The one retry rule of
-- steadytext_queue_fail and steadytext_queue_rescue_expired.
CREATE FUNCTION steadytext_queue_may_retry(retries integer, max_retries integer,
                                           retry_limit integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT retries < least(max_retries, coalesce(retry_limit, max_retries));
$$;

-- Records that an attempt of worker_id failed with `error`. While retries are left (see
-- steadytext_queue_may_retry) and the error is retryable, the request goes back to pending, not
-- claimable before now() + backoff * 2^n (n = retries so far, capped at one hour); otherwise it
-- fails for good (status 'failed', failed_at). Returns the new status, or NULL if worker_id does
-- not hold the request's lease.
CREATE FUNCTION steadytext_queue_fail(request_id uuid, worker_id text, error text,
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
    PERFORM @extschema@.steadytext_queue_notify_completed(job.request_id, job.function_name, 'failed');
    RETURN 'failed';
END
$$;

-- Puts requests whose lease expired (their worker died or hung) back to pending, counting a retry
-- and applying the same retry rule and backoff as steadytext_queue_fail (retry_limit is the
-- rescuing worker's); those out of retries fail for good. Returns how many requests were rescued
-- or failed.
CREATE FUNCTION steadytext_queue_rescue_expired(backoff interval DEFAULT '1 second',
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
        SELECT id, request_id, function_name, worker_id AS w, retry_count AS retries, max_retries
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
            PERFORM @extschema@.steadytext_queue_notify_completed(job.request_id, job.function_name, 'failed');
        END IF;
    END LOOP;
    RETURN n;
END
$$;

-- Cancels a pending or processing request. Returns true if it was and now is cancelled, false if
-- it had already finished (or is unknown). A cancelled request's result is never written
-- afterwards: steadytext_queue_complete refuses it. Workers may cancel any request; an ordinary
-- role cancels its own through steadytext_cancel_async.
CREATE FUNCTION steadytext_queue_cancel(request_id uuid)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    fn text;
BEGIN
    UPDATE @extschema@.steadytext_queue
    SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL
    WHERE request_id = steadytext_queue_cancel.request_id AND status IN ('pending', 'processing')
    RETURNING function_name INTO fn;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM @extschema@.steadytext_queue_notify_completed(steadytext_queue_cancel.request_id, fn, 'cancelled');
    RETURN true;
END
$$;

-- Deletes up to batch_limit (1..10000) finished requests (completed, failed or cancelled) that
-- finished more than `retention` ago, oldest first, skipping rows other sessions hold; returns
-- how many it deleted. Workers call it with steadytext.queue_retention in small batches, each its
-- own short transaction, until it returns fewer than batch_limit. A purged request's id is then
-- unknown: steadytext_check_async and steadytext_get_async_result raise P0002 for it and
-- steadytext_check_async_batch reports it 'not_found'.
CREATE FUNCTION steadytext_queue_purge(retention interval, batch_limit integer DEFAULT 500)
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    purged integer;
BEGIN
    IF retention IS NULL OR batch_limit IS NULL THEN
        RAISE EXCEPTION 'retention and batch_limit must not be null' USING ERRCODE = '22004';
    END IF;
    IF retention < interval '0' THEN
        RAISE EXCEPTION 'retention must not be negative, got %', retention USING ERRCODE = '22023';
    END IF;
    IF batch_limit < 1 OR batch_limit > 10000 THEN
        RAISE EXCEPTION 'batch_limit must be between 1 and 10000, got %', batch_limit
            USING ERRCODE = '22023';
    END IF;
    DELETE FROM @extschema@.steadytext_queue
    WHERE id IN (
        SELECT id FROM @extschema@.steadytext_queue
        WHERE status IN ('completed', 'failed', 'cancelled')
          AND coalesce(completed_at, failed_at) < now() - retention
        ORDER BY coalesce(completed_at, failed_at)
        LIMIT batch_limit
        FOR UPDATE SKIP LOCKED
    );
    GET DIAGNOSTICS purged = ROW_COUNT;
    RETURN purged;
END
$$;

REVOKE ALL ON FUNCTION
    steadytext_queue_notify_completed(uuid, text, text),
    steadytext_queue_wake_waiters(),
    steadytext_queue_may_retry(integer, integer, integer),
    steadytext_queue_claim(text, integer, interval),
    steadytext_worker_heartbeat(text, text, integer, interval, text),
    steadytext_queue_complete(uuid, text, text),
    steadytext_queue_complete_many(text, uuid[], text[]),
    steadytext_queue_fail(uuid, text, text, boolean, interval, integer),
    steadytext_queue_rescue_expired(interval, integer),
    steadytext_queue_cancel(uuid),
    steadytext_queue_purge(interval, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    steadytext_queue_notify_completed(uuid, text, text),
    steadytext_queue_wake_waiters(),
    steadytext_queue_may_retry(integer, integer, integer),
    steadytext_queue_claim(text, integer, interval),
    steadytext_worker_heartbeat(text, text, integer, interval, text),
    steadytext_queue_complete(uuid, text, text),
    steadytext_queue_complete_many(text, uuid[], text[]),
    steadytext_queue_fail(uuid, text, text, boolean, interval, integer),
    steadytext_queue_rescue_expired(interval, integer),
    steadytext_queue_cancel(uuid),
    steadytext_queue_purge(interval, integer)
TO steadytext_worker;
