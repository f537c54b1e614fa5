//! Figure 1: enqueue throughput of `steadytext_generate_async`, in one set-returning statement
//! and as single-statement calls from one client. No worker runs, so every job stays pending.

use std::time::Instant;

use crate::error::Result;
use crate::report::Line;
use crate::setup;

/// Enqueues `jobs` requests both ways and prints the two lines.
pub fn run(jobs: u32) -> Result<()> {
    let (_cluster, mut db) = setup::cluster()?;
    let n = i32::try_from(jobs).unwrap_or(i32::MAX);

    let start = Instant::now();
    let made: i64 = db
        .query_one(
            "SELECT count(steadytext_generate_async('Enqueue bench prompt ' || i, 16))
             FROM generate_series(1, $1) AS i",
            &[&n],
        )?
        .get(0);
    let secs = start.elapsed().as_secs_f64();
    let set = Line::new("enqueue_insert_select")
        .field("jobs", made)
        .field("statements", 1)
        .num("seconds", secs, 3)
        .num("jobs_per_s", made as f64 / secs, 0)
        .with_load();
    println!("{set}");

    db.batch_execute("TRUNCATE steadytext_queue")?;
    let stmt = db.prepare("SELECT steadytext_generate_async($1, 16)")?;
    let start = Instant::now();
    for i in 0..n {
        db.query_one(&stmt, &[&format!("Enqueue bench prompt {i}")])?;
    }
    let secs = start.elapsed().as_secs_f64();
    let single = Line::new("enqueue_single_statements")
        .field("jobs", n)
        .field("clients", 1)
        .field("mode", "autocommit_prepared")
        .num("seconds", secs, 3)
        .num("jobs_per_s", f64::from(n) / secs, 0)
        .num("mean_ms", secs * 1000.0 / f64::from(n), 3)
        .with_load();
    println!("{single}");
    Ok(())
}
