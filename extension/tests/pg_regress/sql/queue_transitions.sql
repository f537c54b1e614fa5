-- The queue's state transitions, as every worker performs them: claim, heartbeat, complete,
-- fail (retry with backoff, then failed for good), rescue of expired leases, cancel.
TRUNCATE steadytext_queue, steadytext_workers;
SELECT steadytext_generate_async('low, old', priority => -5) AS low_old \gset
SELECT steadytext_generate_async('mid, old') AS mid_old \gset
SELECT steadytext_generate_async('high', priority => 10) AS high \gset
SELECT steadytext_generate_async('mid, new') AS mid_new \gset
SELECT steadytext_generate_async('low, new', priority => -5) AS low_new \gset
-- claim order: priority DESC, then oldest first; each claim takes a lease of the given length
SELECT parameters->>'prompt' AS prompt, priority, status, worker_id,
       lease_expires_at - started_at AS lease
FROM steadytext_queue_claim('w1', 2, '1 minute');
SELECT parameters->>'prompt' AS prompt, worker_id, lease_expires_at - started_at AS lease
FROM steadytext_queue_claim(worker_id => 'w2', batch_size => 2);
SELECT parameters->>'prompt' AS prompt, worker_id FROM steadytext_queue_claim('w3', 10);
-- nothing left to claim
SELECT count(*) FROM steadytext_queue_claim('w4', 10);
-- costs: an embedding costs 1 of batch_size and any other request other_cost; a claim takes
-- requests in claim order while their predecessors left room (the last may go over)
SELECT steadytext_embed_async('e1') IS NOT NULL AS e1, steadytext_embed_async('e2') IS NOT NULL AS e2,
       steadytext_generate_async('g3') IS NOT NULL AS g3, steadytext_embed_async('e4') IS NOT NULL AS e4,
       steadytext_generate_async('g5') IS NOT NULL AS g5, steadytext_embed_async('e6') IS NOT NULL AS e6;
SELECT coalesce(parameters->>'text_input', parameters->>'prompt') AS input
FROM steadytext_queue_claim('wc', 4, other_cost => 2);
SELECT coalesce(parameters->>'text_input', parameters->>'prompt') AS input
FROM steadytext_queue_claim('wc', 2, other_cost => 2);
SELECT coalesce(parameters->>'text_input', parameters->>'prompt') AS input
FROM steadytext_queue_claim('wc', 10, other_cost => 2);
DELETE FROM steadytext_queue WHERE worker_id = 'wc';
-- heartbeat: registers the worker and extends the leases of its requests only
BEGIN;
SELECT steadytext_worker_heartbeat('w1', 'host-a', 4242, '10 minutes') AS extended;
SELECT parameters->>'prompt' AS prompt, lease_expires_at = now() + interval '10 minutes' AS extended
FROM steadytext_queue WHERE status = 'processing' ORDER BY id;
COMMIT;
SELECT worker_id, host, pid, status FROM steadytext_workers;
-- complete: only by the lease holder, only once, never with a NULL result
SELECT steadytext_queue_complete(:'high', 'w2', 'not mine') AS other_worker;
SELECT steadytext_queue_complete(:'high', 'w1', 'the answer') AS holder;
SELECT steadytext_queue_complete(:'high', 'w1', 'again') AS twice;
SELECT sqlstate_of(format('SELECT steadytext_queue_complete(%L, %L, NULL)', :'mid_old', 'w1'));
SELECT status, result, error, worker_id, lease_expires_at, completed_at IS NOT NULL AS completed
FROM steadytext_queue WHERE request_id = :'high';
-- complete is refused once the request was cancelled, and the result is never written
SELECT steadytext_cancel_async(:'mid_old') AS cancelled;
SELECT steadytext_queue_complete(:'mid_old', 'w1', 'too late') AS completed;
SELECT steadytext_queue_fail(:'mid_old', 'w1', 'too late') AS failed;
SELECT status, result, lease_expires_at, completed_at IS NOT NULL AS finished
FROM steadytext_queue WHERE request_id = :'mid_old';
-- fail: back to pending with exponential backoff (1 s, 2 s, 4 s) until max_retries (3) is used
BEGIN;
SELECT steadytext_queue_fail(:'mid_new', 'w2', 'boom 1') AS status;
SELECT status, retry_count, error, worker_id, lease_expires_at, next_attempt_at - now() AS backoff
FROM steadytext_queue WHERE request_id = :'mid_new';
COMMIT;
-- not claimable before its backoff ends
SELECT count(*) AS claimable_early FROM steadytext_queue_claim('w2', 10);
UPDATE steadytext_queue SET next_attempt_at = now() WHERE request_id = :'mid_new';
SELECT parameters->>'prompt' AS prompt, retry_count FROM steadytext_queue_claim('w2', 10);
BEGIN;
SELECT steadytext_queue_fail(:'mid_new', 'w2', 'boom 2') AS status;
SELECT retry_count, next_attempt_at - now() AS backoff FROM steadytext_queue WHERE request_id = :'mid_new';
COMMIT;
UPDATE steadytext_queue SET next_attempt_at = now() WHERE request_id = :'mid_new';
SELECT count(*) AS claimed FROM steadytext_queue_claim('w2', 10);
BEGIN;
SELECT steadytext_queue_fail(:'mid_new', 'w2', 'boom 3') AS status;
SELECT retry_count, next_attempt_at - now() AS backoff FROM steadytext_queue WHERE request_id = :'mid_new';
COMMIT;
UPDATE steadytext_queue SET next_attempt_at = now() WHERE request_id = :'mid_new';
SELECT count(*) AS claimed FROM steadytext_queue_claim('w2', 10);
SELECT steadytext_queue_fail(:'mid_new', 'w2', 'boom 4') AS status;
SELECT status, retry_count, max_retries, error, failed_at IS NOT NULL AS failed, completed_at,
       lease_expires_at
FROM steadytext_queue WHERE request_id = :'mid_new';
-- permanently failed: nothing changes it any more
SELECT steadytext_queue_fail(:'mid_new', 'w2', 'boom 5') AS refused,
       steadytext_queue_complete(:'mid_new', 'w2', 'late') AS completed,
       steadytext_cancel_async(:'mid_new') AS cancelled;
-- a non-retryable error fails at once
SELECT steadytext_queue_fail(:'low_old', 'w2', 'bad request', retryable => false) AS status;
SELECT status, retry_count, error FROM steadytext_queue WHERE request_id = :'low_old';
-- only the lease holder may fail a request
SELECT steadytext_queue_fail(:'low_new', 'w1', 'not mine') AS refused;
-- the retry rule: below the request's max_retries and below the worker's own retry_limit
SELECT r AS retries, m AS max_retries, l AS retry_limit, steadytext_queue_may_retry(r, m, l)
FROM (VALUES (0, 3, NULL), (2, 3, NULL), (3, 3, NULL), (0, 3, 0), (1, 3, 2), (2, 3, 2),
             (0, 0, 5)) AS t(r, m, l);
-- a worker whose own limit is used up fails the request for good
SELECT steadytext_generate_async('limited', priority => 1000) AS limited \gset
SELECT parameters->>'prompt' AS claimed FROM steadytext_queue_claim('w7', 1);
SELECT steadytext_queue_fail(:'limited', 'w7', 'boom', retry_limit => 0) AS status;
SELECT status, retry_count, max_retries FROM steadytext_queue WHERE request_id = :'limited';
-- rescue: an expired lease goes back to pending (a retry), or fails once retries are used up
SELECT steadytext_generate_async('orphan') AS orphan \gset
SELECT steadytext_generate_async('doomed orphan') AS doomed \gset
UPDATE steadytext_queue SET max_retries = 0 WHERE request_id = :'doomed';
SELECT count(*) AS claimed FROM steadytext_queue_claim('w5', 10, '1 microsecond');
SELECT steadytext_queue_rescue_expired() AS rescued;
SELECT parameters->>'prompt' AS prompt, status, retry_count, worker_id, lease_expires_at, error,
       failed_at IS NOT NULL AS failed
FROM steadytext_queue WHERE request_id IN (:'orphan', :'doomed') ORDER BY id;
-- the old lease holder can no longer complete it; unexpired leases are left alone
SELECT steadytext_queue_complete(:'orphan', 'w5', 'late') AS completed;
SELECT steadytext_queue_rescue_expired() AS rescued_again;
SELECT status, worker_id FROM steadytext_queue WHERE request_id = :'low_new';
-- a retried request is claimed again and can complete
UPDATE steadytext_queue SET next_attempt_at = now() WHERE request_id = :'orphan';
SELECT parameters->>'prompt' AS prompt, retry_count FROM steadytext_queue_claim('w6', 10);
SELECT steadytext_queue_complete(:'orphan', 'w6', 'rescued result') AS completed;
SELECT steadytext_get_async_result(:'orphan', 0);
-- bad arguments of the transition functions
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$SELECT steadytext_queue_claim(NULL)$$),
    ($$SELECT steadytext_queue_claim('')$$),
    ($$SELECT steadytext_queue_claim('w', 0)$$),
    ($$SELECT steadytext_queue_claim('w', 1, '0 seconds')$$),
    ($$SELECT steadytext_queue_claim('w', 1, '1 second', 0)$$),
    ($$SELECT steadytext_queue_claim('w', 1, '1 second', 1001)$$),
    ($$SELECT steadytext_queue_claim('w', 1, '1 second', NULL)$$),
    ($$SELECT steadytext_worker_heartbeat('', 'h', 1)$$),
    ($$SELECT steadytext_worker_heartbeat('w', 'h', 1, '-1 second')$$),
    ($$SELECT steadytext_worker_heartbeat('w', NULL, 1)$$),
    ($$SELECT steadytext_worker_heartbeat('w', 'h', 1, status => 'dancing')$$),
    ($$SELECT steadytext_queue_fail('00000000-0000-0000-0000-000000000000', 'w', NULL)$$),
    ($$SELECT steadytext_queue_fail('00000000-0000-0000-0000-000000000000', 'w', 'e', NULL)$$),
    ($$SELECT steadytext_queue_fail('00000000-0000-0000-0000-000000000000', 'w', 'e', backoff => '-1s')$$),
    ($$SELECT steadytext_queue_fail('00000000-0000-0000-0000-000000000000', 'w', 'e', retry_limit => -1)$$),
    ($$SELECT steadytext_queue_rescue_expired(NULL)$$),
    ($$SELECT steadytext_queue_rescue_expired('-1s')$$),
    ($$SELECT steadytext_queue_rescue_expired(retry_limit => -1)$$)
) AS t(stmt);
-- the table's constraints tie timestamps and leases to states: every one of these is refused
SELECT steadytext_generate_async('still pending') IS NOT NULL AS queued;
SELECT stmt, sqlstate_of(stmt) AS outcome FROM (VALUES
    ($$UPDATE steadytext_queue SET status = 'processing' WHERE status = 'pending'$$),
    ($$UPDATE steadytext_queue SET lease_expires_at = now() WHERE status = 'pending'$$),
    ($$UPDATE steadytext_queue SET status = 'completed' WHERE status = 'cancelled'$$),
    ($$UPDATE steadytext_queue SET status = 'failed' WHERE status = 'cancelled'$$),
    ($$UPDATE steadytext_queue SET result = 'x' WHERE status = 'pending'$$),
    ($$UPDATE steadytext_queue SET status = 'done' WHERE status = 'pending'$$),
    ($$UPDATE steadytext_queue SET function_name = 'dance'$$),
    ($$UPDATE steadytext_queue SET parameters = '[]'$$),
    ($$UPDATE steadytext_queue SET retry_count = max_retries + 1$$),
    ($$UPDATE steadytext_queue SET priority = 1001$$)
) AS t(stmt);
-- 0.2.0: a heartbeat reports the worker's slots and models (the dashboard shows them); a
-- five-argument call, as 0.1.0 workers make it, leaves them empty
SELECT steadytext_worker_heartbeat('w7', 'host-c', 77, '1 minute', 'running', 8,
                                   'generation: gemma-3-270m') AS extended;
SELECT worker_id, concurrency, models FROM steadytext_workers WHERE worker_id = 'w7';
SELECT steadytext_worker_heartbeat('w7', 'host-c', 77) AS extended;
SELECT worker_id, concurrency, models FROM steadytext_workers WHERE worker_id = 'w7';
SELECT sqlstate_of($$SELECT steadytext_worker_heartbeat('w7', 'h', 1, concurrency => 0)$$)
       AS zero_slots;
-- retry: a request that failed for good goes back to pending, due now, its retries counted
-- from zero and its last error kept until it completes; nothing else is retried
TRUNCATE steadytext_queue;
SELECT steadytext_generate_async('fails then retried', 2) AS doomed \gset
SELECT count(*) AS claimed FROM steadytext_queue_claim('w8', 1);
SELECT steadytext_queue_fail(:'doomed', 'w8', 'engine exploded', false) AS failed_status;
SELECT steadytext_queue_retry(:'doomed') AS retried;
SELECT status, retry_count, error, failed_at, worker_id, next_attempt_at <= now() AS due
FROM steadytext_queue WHERE request_id = :'doomed';
SELECT steadytext_queue_retry(:'doomed') AS retried_while_pending;
SELECT count(*) AS claimed FROM steadytext_queue_claim('w8', 1);
SELECT steadytext_queue_complete(:'doomed', 'w8', 'second time lucky') AS completed;
SELECT status, result, error FROM steadytext_queue WHERE request_id = :'doomed';
SELECT steadytext_queue_retry(:'doomed') AS retried_when_completed;
SELECT steadytext_queue_retry('00000000-0000-0000-0000-000000000000') AS unknown;
SELECT steadytext_queue_retry(NULL) AS null_id;
