//! Figure: the dashboard's pages on a large queue (issue #25). `rows` (1 000 000) requests of
//! mixed statuses and functions, created over the last 30 days, are inserted directly (as the
//! superuser; pending ones not due for a day and processing ones leased for a day by a worker
//! that does not exist, so the daemon's own worker leaves them alone); then `steadytext serve
//! --database-url` and each page is fetched `samples` (20) times after one warm-up, timed from
//! the request to the whole body (client side, plain HTTP on localhost).

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::report::Line;
use crate::setup::{self, Env};
use crate::stats::summarize;

/// The rows: status by share, function by row number, times spread over 30 days.
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
             CASE WHEN i % 50 = 1 THEN 'pending' WHEN i % 100 = 2 THEN 'processing'
                  WHEN i % 33 = 0 THEN 'failed' WHEN i % 25 = 3 THEN 'cancelled'
                  ELSE 'completed' END AS s,
             now() - interval '30 days' * (1 - i::float8 / $1) AS c
      FROM generate_series(1, $1::int) AS i) AS g";

/// Fills the queue, then times every page; prints one line per page.
pub fn run(env: &Env, rows: i32, samples: usize) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let fill = Instant::now();
    db.execute(FILL, &[&rows])?;
    db.batch_execute("VACUUM ANALYZE steadytext_queue")?;
    let fill_s = fill.elapsed().as_secs_f64();
    let some: String = db
        .query_one(
            "SELECT request_id::text FROM steadytext_queue WHERE id = (SELECT max(id) / 2 FROM steadytext_queue)",
            &[],
        )?
        .get(0);
    let middle: i64 = db.query_one("SELECT max(id) / 2 FROM steadytext_queue", &[])?.get(0);
    let url = cluster.url("postgres");
    let serve = env.serve(&["--database-url", &url, "--concurrency", "1"])?;
    let pages = [
        ("overview", "/ui".to_owned()),
        ("requests", "/ui/requests".to_owned()),
        ("requests_page_half_way", format!("/ui/requests?before={middle}")),
        ("requests_failed", "/ui/requests?status=failed".to_owned()),
        ("requests_rerank", "/ui/requests?function=rerank".to_owned()),
        ("requests_pending_rerank", "/ui/requests?function=rerank&status=pending".to_owned()),
        ("requests_last_5_minutes", "/ui/requests?age=300".to_owned()),
        ("requests_priority_1", "/ui/requests?priority=1".to_owned()),
        ("request", format!("/ui/requests/{some}")),
        ("request_status", format!("/ui/requests/{some}/status")),
    ];
    for (name, path) in pages {
        serve.get(&path)?; // warm-up (connection, plans, caches)
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            let body = serve.get(&path)?;
            times.push(start.elapsed());
            if body.is_empty() {
                return Err(crate::error::BenchError::Process(format!("{path}: empty page")));
            }
        }
        let s = summarize(&times)?;
        println!(
            "{}",
            Line::new("ui_page_cost")
                .field("page", name)
                .field("rows", rows)
                .num("fill_s", fill_s, 1)
                .latency("page", &s)
                .num("target_p95_ms", Duration::from_millis(100).as_secs_f64() * 1000.0, 0)
                .with_load()
        );
    }
    Ok(())
}
