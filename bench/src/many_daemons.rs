//! Figure 10: many daemons on one queue (issue #24). `daemons` `steadytext worker` processes
//! (1 llama.cpp thread each) share one cluster.
//!
//! Idle: with nothing enqueued, the transactions the cluster's database commits over `idle_secs`
//! (`pg_stat_database`, its counters flushed before each read), per daemon per second: every
//! statement a worker sends outside a transaction block is one transaction, so this counts its
//! background statements (claims, settings, heartbeats, purges); the benchmark's own two reads
//! are subtracted; the window opens 11 s after the workers' start and warm-up, so that their
//! statements, which reach the statistics up to 10 s late, are not counted in it. Anchor in the
//! same run: the same window with no daemon running.
//!
//! Under load: `jobs` copies of one cached generation drained by the `daemons` workers, then by
//! one worker, as in `drain_cached` (clock from the enqueueing commit until none is pending or
//! processing); `ratio` = many / one. Anchor in the same run: the raw-SQL claim/complete loop of
//! `drain_cached` on as many rows (`raw_sql_batch10_jobs_per_s`).
//!
//! Empty claims under load: `daemons` fresh workers while `clients` sessions each enqueue
//! `per_client` copies of the cached generation, one autocommit statement (one NOTIFY) each, as
//! fast as they can. Claims are `steadytext_queue_claim`'s calls (`track_functions = pl`, read
//! once the workers exited, which flushes their statistics); claims that got requests are the
//! distinct (worker, start time) pairs of the requests (a claim stamps its rows with its
//! transaction's `now()`); `empty_claims_per_completed` = (claims − those) / completed.

use std::time::{Duration, Instant};

use crate::completion::poll;
use crate::daemon::Daemon;
use crate::drain;
use crate::error::{BenchError, Result};
use crate::report::Line;
use crate::setup::{self, Env};

/// The prompt every job asks for (computed once, then a cache hit).
const CACHED_PROMPT: &str = "Many daemons cached prompt";

/// How long an idle backend may keep its statistics before flushing them (PostgreSQL's
/// `PGSTAT_IDLE_INTERVAL`, 10 s), and a margin.
const STATS_SETTLE: Duration = Duration::from_secs(11);

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

/// Calls of `steadytext_queue_claim` so far, once every session but `db` has ended (an ending
/// backend flushes its statistics).
fn claims(db: &mut postgres::Client) -> Result<i64> {
    poll(Duration::from_secs(60), "the workers' sessions to end", || {
        let others: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                &[],
            )?
            .get(0);
        Ok((others == 0).then_some(()))
    })?;
    db.batch_execute("SELECT pg_stat_clear_snapshot()")?;
    Ok(db
        .query_one(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_user_functions
             WHERE funcname = 'steadytext_queue_claim'",
            &[],
        )?
        .get(0))
}

/// What the stream phase saw.
struct Stream {
    /// Requests completed.
    completed: i64,
    /// Claims the workers made.
    claims: i64,
    /// Claims that got at least one request.
    fruitful: i64,
    /// From the first enqueue until none was pending or processing.
    seconds: f64,
}

/// The stream phase (module docs): `start` starts the workers.
fn stream(
    cluster_url: &str,
    db: &mut postgres::Client,
    start: &dyn Fn(usize) -> Result<Daemon>,
    daemons: usize,
    clients: usize,
    per_client: usize,
) -> Result<Stream> {
    db.batch_execute("TRUNCATE steadytext_queue")?;
    let before = claims(db)?;
    let workers = (0..daemons).map(start).collect::<Result<Vec<_>>>()?;
    let begin = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let senders: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(move || -> Result<()> {
                    let mut c = postgres::Client::connect(cluster_url, postgres::NoTls)?;
                    let enqueue = c.prepare("SELECT steadytext_generate_async($1, 16)")?;
                    for _ in 0..per_client {
                        c.query_one(&enqueue, &[&CACHED_PROMPT])?;
                    }
                    Ok(())
                })
            })
            .collect();
        for s in senders {
            s.join().map_err(|_| BenchError::Process("an enqueueing client panicked".into()))??;
        }
        Ok(())
    })?;
    let end = setup::wait_drained(db, Duration::from_secs(3600))?;
    drop(workers);
    let after = claims(db)?;
    let (completed, ..) = setup::outcome(db)?;
    let fruitful: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT DISTINCT worker_id, started_at FROM steadytext_queue) AS c",
            &[],
        )?
        .get(0);
    Ok(Stream { completed, claims: after - before, fruitful, seconds: (end - begin).as_secs_f64() })
}

/// Runs the figure and prints one line.
pub fn run(
    env: &Env,
    daemons: usize,
    idle_secs: u64,
    jobs: u32,
    clients: usize,
    per_client: usize,
) -> Result<()> {
    let (cluster, mut db) = setup::cluster_with(&["track_functions=pl"])?;
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
    // the workers' start and the warm-up reach the statistics up to 10 s late (an idle backend
    // flushes them after 10 s): let them land before the window opens
    std::thread::sleep(STATS_SETTLE);
    let idle = rate(&mut db, idle_secs)?;
    let many_rate = drain(&mut db, jobs)?;
    drop(many);
    let streamed = stream(&url, &mut db, &start, daemons, clients, per_client)?;
    let one = start(0)?;
    let one_rate = drain(&mut db, jobs)?;
    drop(one);
    db.batch_execute("TRUNCATE steadytext_queue")?;
    let raw_start = enqueue(&mut db, i32::try_from(jobs).unwrap_or(i32::MAX))?;
    drain::raw_sql_drain(&mut db)?;
    let raw_rate = f64::from(jobs) / raw_start.elapsed().as_secs_f64();
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
            .num("raw_sql_batch10_jobs_per_s", raw_rate, 1)
            .field("stream_clients", clients)
            .field("stream_completed", streamed.completed)
            .num("stream_jobs_per_s", streamed.completed as f64 / streamed.seconds, 1)
            .field("stream_claims", streamed.claims)
            .field("stream_claims_with_requests", streamed.fruitful)
            .num(
                "empty_claims_per_completed",
                (streamed.claims - streamed.fruitful) as f64 / streamed.completed.max(1) as f64,
                3,
            )
            .with_load()
    );
    Ok(())
}
