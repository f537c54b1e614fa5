-- pg_steadytext 0.2.0: the queue transitions that end a request, now aware of derivations
-- (derivations.sql): a completion writes a derivation's result into its row, and a failure or a
-- cancel shows on the row. Each replaces its 0.1.0 version (queue_transitions.sql) with the same
-- signature, rules and grants. The same statements are in pg_steadytext--0.1.0--0.2.0.sql.

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
