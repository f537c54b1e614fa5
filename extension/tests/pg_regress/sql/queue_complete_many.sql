-- steadytext_queue_complete_many: a worker completes the requests that finished together in one
-- statement, with steadytext_queue_complete's rule for each.
TRUNCATE steadytext_queue, steadytext_workers;
SELECT steadytext_generate_async('m' || i) FROM generate_series(1, 5) AS i \g /dev/null
SELECT count(*) AS claimed FROM steadytext_queue_claim('w1', 3);
SELECT count(*) AS claimed FROM steadytext_queue_claim('w2', 1);
SELECT request_id AS m1 FROM steadytext_queue WHERE parameters->>'prompt' = 'm1' \gset
SELECT request_id AS m2 FROM steadytext_queue WHERE parameters->>'prompt' = 'm2' \gset
SELECT request_id AS m3 FROM steadytext_queue WHERE parameters->>'prompt' = 'm3' \gset
SELECT request_id AS m4 FROM steadytext_queue WHERE parameters->>'prompt' = 'm4' \gset
SELECT request_id AS m5 FROM steadytext_queue WHERE parameters->>'prompt' = 'm5' \gset
-- m3 is cancelled while it runs, m4 is w2's, m5 is still pending: only m1 and m2 are written,
-- and the answer follows the order given
SELECT steadytext_cancel_async(:'m3') AS cancelled;
SELECT steadytext_queue_complete_many('w1', ARRAY[:'m2', :'m3', :'m4', :'m5', :'m1']::uuid[],
                                      ARRAY['two', 'three', 'four', 'five', 'one']) AS written;
SELECT parameters->>'prompt' AS prompt, status, result, worker_id, lease_expires_at IS NULL AS no_lease,
       completed_at IS NOT NULL AS finished
FROM steadytext_queue ORDER BY id;
-- a second call writes nothing: they are completed already
SELECT steadytext_queue_complete_many('w1', ARRAY[:'m1', :'m2']::uuid[], ARRAY['again', 'again'])
    AS written;
-- an empty call is allowed and writes nothing
SELECT steadytext_queue_complete_many('w1', '{}', '{}') AS written;
-- invalid arguments
SELECT stmt, sqlstate_of(format(stmt, :'m4', :'m5')) AS outcome FROM (VALUES
    ('SELECT steadytext_queue_complete_many(''w2'', NULL, ARRAY[''x''])'),
    ('SELECT steadytext_queue_complete_many(''w2'', ARRAY[%L]::uuid[], NULL)'),
    ('SELECT steadytext_queue_complete_many(''w2'', ARRAY[%L, %L]::uuid[], ARRAY[''x''])'),
    ('SELECT steadytext_queue_complete_many(''w2'', ARRAY[%L, NULL]::uuid[], ARRAY[''x'', ''y''])'),
    ('SELECT steadytext_queue_complete_many(''w2'', ARRAY[%L, %L]::uuid[], ARRAY[''x'', NULL])'),
    ('SELECT steadytext_queue_complete_many(''w2'', ARRAY[%L, %1$L]::uuid[], ARRAY[''x'', ''y''])'),
    ('SELECT steadytext_queue_complete_many(''w2'', array_fill(%L::uuid, ARRAY[10001]),
                                            array_fill(''x''::text, ARRAY[10001]))')
) AS t(stmt);
-- nothing was written by the refused calls
SELECT parameters->>'prompt' AS prompt, status FROM steadytext_queue
WHERE parameters->>'prompt' IN ('m4', 'm5') ORDER BY id;
-- only workers (and superusers) may complete
SET ROLE regress_alice;
SELECT sqlstate_of(format('SELECT steadytext_queue_complete_many(%L, ARRAY[%L]::uuid[], ARRAY[%L])',
                          'w2', :'m4', 'forged'));
RESET ROLE;
SET ROLE regress_worker;
SELECT steadytext_queue_complete_many('w2', ARRAY[:'m4']::uuid[], ARRAY['four']) AS written;
RESET ROLE;
SELECT parameters->>'prompt' AS prompt, status, result FROM steadytext_queue
WHERE parameters->>'prompt' = 'm4';
TRUNCATE steadytext_queue, steadytext_workers;
