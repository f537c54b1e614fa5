//! A large queue of mixed requests, written straight into `steadytext_queue` (as a superuser):
//! what the dashboard's cost benchmark and its index test read.
//!
//! Row `i` of `rows`: created `30 days × (1 − i/rows)` ago; function `rerank` every 200th,
//! `embed` every 20th, a few `generate_json`/`_regex`/`_choice`, else `generate`. The newest 2 %
//! are still open, as a queue's backlog is its newest rows: `processing` every 40th (leased for
//! a day by worker `page-cost-worker`, which does not exist), else `pending` (not due for a
//! day); the older ones finished: `failed` every 33rd, `cancelled` when `i % 25 = 3`, else
//! `completed` (3 s after its creation). Priority −1, 0 or 1.

/// The statement; `$1` is the number of rows.
const FILL: &str = "
INSERT INTO steadytext_queue
    (function_name, parameters, status, priority, result, error, created_at, started_at,
     completed_at, failed_at, next_attempt_at, worker_id, lease_expires_at)
SELECT f, jsonb_build_object('prompt', 'Page cost prompt ' || i), s,
       (i % 3) - 1,
       CASE WHEN s = 'completed' THEN 'result ' || i END,
       CASE WHEN s = 'failed' THEN 'error ' || i END,
       c,
       CASE WHEN s IN ('processing', 'completed', 'failed') THEN c + interval '1 second' END,
       CASE WHEN s IN ('completed', 'cancelled') THEN c + interval '3 seconds' END,
       CASE WHEN s = 'failed' THEN c + interval '3 seconds' END,
       CASE WHEN s = 'pending' THEN now() + interval '1 day' ELSE c END,
       CASE WHEN s IN ('processing', 'completed', 'failed') THEN 'page-cost-worker' END,
       CASE WHEN s = 'processing' THEN now() + interval '1 day' END
FROM (SELECT i,
             CASE WHEN i % 200 = 0 THEN 'rerank' WHEN i % 20 = 0 THEN 'embed'
                  WHEN i % 50 = 3 THEN 'generate_json' WHEN i % 70 = 5 THEN 'generate_regex'
                  WHEN i % 90 = 7 THEN 'generate_choice' ELSE 'generate' END AS f,
             CASE WHEN i > $1 * 0.98 AND i % 40 = 0 THEN 'processing'
                  WHEN i > $1 * 0.98 THEN 'pending'
                  WHEN i % 33 = 0 THEN 'failed' WHEN i % 25 = 3 THEN 'cancelled'
                  ELSE 'completed' END AS s,
             now() - interval '30 days' * (1 - i::float8 / $1) AS c
      FROM generate_series(1, $1::int) AS i) AS g";

/// Inserts `rows` such requests in one statement.
pub fn fill_mixed(db: &mut postgres::Client, rows: i32) -> Result<(), postgres::Error> {
    db.execute(FILL, &[&rows]).map(drop)
}
