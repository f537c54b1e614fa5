//! Figure: the dashboard's pages on a large queue (issue #25). `rows` (1 000 000) requests of
//! mixed statuses and functions, created over the last 30 days, are inserted directly (as the
//! superuser; pending ones not due for a day and processing ones leased for a day by a worker
//! that does not exist, so the daemon's own worker leaves them alone; `steadytext.queue_retention`
//! 0, so that it purges none); then `steadytext serve
//! --database-url` and each page is fetched `samples` (20) times after one warm-up, timed from
//! the request to the whole body (client side, plain HTTP on localhost).

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::report::Line;
use crate::setup::{self, Env};
use crate::stats::summarize;

/// Fills the queue, then times every page; prints one line per page.
pub fn run(env: &Env, rows: i32, samples: usize) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let fill = Instant::now();
    steadytext_testkit::queue_fill::fill_mixed(&mut db, rows)?;
    db.batch_execute("VACUUM ANALYZE steadytext_queue")?;
    let fill_s = fill.elapsed().as_secs_f64();
    let some: String = db
        .query_one(
            "SELECT request_id::text FROM steadytext_queue WHERE id = (SELECT max(id) / 2 FROM steadytext_queue)",
            &[],
        )?
        .get(0);
    let middle: i64 = db.query_one("SELECT max(id) / 2 FROM steadytext_queue", &[])?.get(0);
    // the daemon's worker would purge the rows older than the default retention (7 days)
    // (the setting exists once the library is loaded in the session)
    for sql in [
        "LOAD 'pg_steadytext'",
        "ALTER SYSTEM SET steadytext.queue_retention = 0",
        "SELECT pg_reload_conf()",
    ] {
        db.batch_execute(sql)?;
    }
    let url = cluster.url("postgres");
    let serve = env.serve(&["--database-url", &url, "--concurrency", "1"])?;
    let pages = [
        ("overview", "/ui".to_owned()),
        ("requests", "/ui/requests".to_owned()),
        ("requests_page_half_way", format!("/ui/requests?before={middle}")),
        ("requests_failed", "/ui/requests?status=failed".to_owned()),
        ("requests_rerank", "/ui/requests?function=rerank".to_owned()),
        (
            "requests_cancelled_rerank_none",
            "/ui/requests?function=rerank&status=cancelled".to_owned(),
        ),
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
