//! Figure 10: many daemons on one queue (issue #24). `daemons` `steadytext worker` processes
//! (1 llama.cpp thread each) share one cluster.
//!
//! Idle: with nothing enqueued, the transactions the cluster's database commits over `idle_secs`
//! (`pg_stat_database`, its counters flushed before each read), per daemon per second: every
//! statement a worker sends outside a transaction block is one transaction, so this counts its
//! background statements (claims, settings, heartbeats, purges); the benchmark's own two reads
//! are subtracted. Anchor in the same run: the same window with no daemon running.
//!
//! Under load: `jobs` copies of one cached generation drained by the `daemons` workers, then by
//! one worker, as in `drain_cached` (clock from the enqueueing commit until none is pending or
//! processing); `ratio` = many / one.

use std::time::{Duration, Instant};

use crate::error::{BenchError, Result};
use crate::report::Line;
use crate::setup::{self, Env};

/// The prompt every job asks for (computed once, then a cache hit).
const CACHED_PROMPT: &str = "Many daemons cached prompt";

/// Commits + rollbacks of the `postgres` database so far, after flushing this session's
/// statistics. Other backends flush theirs at least once a second while busy and within 10 s of
/// going idle, so a window's count is off by at most the statements of 10 s at each end: use
/// windows of 30 s or more.
fn transactions(db: &mut postgres::Client) -> Result<i64> {
    db.batch_execute("SELECT pg_stat_force_next_flush()")?;
    Ok(db
        .query_one(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'postgres'",
            &[],
        )?
        .get(0))
}

/// Transactions per second of the database over `secs`, less this function's own reads.
fn rate(db: &mut postgres::Client, secs: u64) -> Result<f64> {
    let before = transactions(db)?;
    std::thread::sleep(Duration::from_secs(secs));
    let after = transactions(db)?;
    // each `transactions` call is two statements of this session
    Ok((after - before - 2) as f64 / secs as f64)
}

/// Enqueues `n` copies of the cached generation in one transaction; returns when it committed.
fn enqueue(db: &mut postgres::Client, n: i32) -> Result<Instant> {
    let mut tx = db.transaction()?;
    tx.query_one(
        "SELECT count(steadytext_generate_async($1, 16)) FROM generate_series(1, $2)",
        &[&CACHED_PROMPT, &n],
    )?;
    tx.commit()?;
    Ok(Instant::now())
}

/// Jobs/s of draining `jobs` cache hits with the workers running now.
fn drain(db: &mut postgres::Client, jobs: u32) -> Result<f64> {
    db.batch_execute("TRUNCATE steadytext_queue")?;
    let start = enqueue(db, i32::try_from(jobs).unwrap_or(i32::MAX))?;
    let end = setup::wait_drained(db, Duration::from_secs(3600))?;
    let (completed, ..) = setup::outcome(db)?;
    if completed != i64::from(jobs) {
        return Err(BenchError::Process(format!("{completed} of {jobs} completed")));
    }
    Ok(f64::from(jobs) / end.duration_since(start).as_secs_f64())
}

/// Runs the figure and prints one line.
pub fn run(env: &Env, daemons: usize, idle_secs: u64, jobs: u32) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    let baseline = rate(&mut db, idle_secs)?;
    let start = |i: usize| {
        let id = format!("many-{i}");
        env.worker(&["--database-url", &url, "--worker-id", &id, "--concurrency", "16"], 1)
    };
    let many = (0..daemons).map(start).collect::<Result<Vec<_>>>()?;
    // the warm-up computes the result once; then nothing is pending
    enqueue(&mut db, 1)?;
    setup::wait_drained(&mut db, Duration::from_secs(600))?;
    let idle = rate(&mut db, idle_secs)?;
    let many_rate = drain(&mut db, jobs)?;
    drop(many);
    let one = start(0)?;
    let one_rate = drain(&mut db, jobs)?;
    drop(one);
    println!(
        "{}",
        Line::new("many_daemons")
            .field("daemons", daemons)
            .field("idle_secs", idle_secs)
            .num("idle_transactions_per_s", idle, 2)
            .num("no_daemon_transactions_per_s", baseline, 2)
            .num("idle_statements_per_daemon_per_s", (idle - baseline) / daemons as f64, 2)
            .field("jobs", jobs)
            .num("many_jobs_per_s", many_rate, 1)
            .num("one_jobs_per_s", one_rate, 1)
            .num("ratio", many_rate / one_rate, 3)
            .with_load()
    );
    Ok(())
}
