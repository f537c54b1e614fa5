-- pg_steadytext 0.2.0: a claim fills a worker's free capacity in one statement when embeddings
-- take less of it than other requests. A worker's embedding of one text takes half a slot (the
-- engine embeds waiting texts together), so a worker with 8 free slots holds 16 embeddings; with
-- 0.1.0's claim, which counts requests, it claimed 8, then 4, 2, 1 and 1: five statements where
-- one does. Replaces 0.1.0's steadytext_queue_claim(text, integer, interval) (queue_transitions.sql),
-- whose calls keep working: the new argument defaults to its old rule. The same statements are
-- in pg_steadytext--0.1.0--0.2.0.sql.

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
