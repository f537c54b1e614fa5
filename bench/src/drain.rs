//! Figure 3: drain throughput. Workers are started (models loaded) first; then one transaction
//! enqueues every job, and the clock runs from its commit until no job is pending or
//! processing. Jobs use `use_cache := false`, so every one reaches the engine.
//!
//! Anchor of the generation drain: the engine's own batch-of-8 speed (`steadytext bench
//! --generate-only`, line `generate_batch8`: 8 prompts decoded together, prefill included),
//! measured on the same threads before and after the drains; each one-worker drain is reported
//! against their mean as tokens/s (jobs/s × tokens per job).

use std::process::Command;

use std::time::{Duration, Instant};

use crate::engine::{line_starting, num, output};
use crate::error::{BenchError, Result};
use crate::report::Line;
use crate::setup::{self, Env};

/// Which kind of job a drain run enqueues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `steadytext_generate_async(prompt, max_tokens, use_cache := false)`.
    Generate {
        /// Tokens per job.
        max_tokens: i32,
    },
    /// `steadytext_embed_async(text, use_cache := false)`.
    Embed,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Generate { .. } => "generate",
            Self::Embed => "embed",
        }
    }

    fn enqueue_sql(self) -> String {
        match self {
            Self::Generate { max_tokens } => format!(
                "SELECT count(steadytext_generate_async('Drain bench prompt number ' || i || ' is about',
                                                       {max_tokens}, use_cache => false))
                 FROM generate_series(1, $1) AS i"
            ),
            Self::Embed => "SELECT count(steadytext_embed_async('Drain bench sentence number ' || i,
                                                       use_cache => false))
                 FROM generate_series(1, $1) AS i"
                .into(),
        }
    }
}

/// Runs one drain of `jobs` jobs for every combination of `workers` and `concurrencies`, printing
/// one line each. Each worker gets `max(1, env.threads / workers)` llama.cpp threads.
pub fn run(
    env: &Env,
    workload: Workload,
    jobs: u32,
    workers: &[usize],
    concurrencies: &[u16],
) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    let n = i32::try_from(jobs).unwrap_or(i32::MAX);
    let anchored = matches!(workload, Workload::Generate { .. }) && workers.contains(&1);
    let engine_before = if anchored { Some(engine_batch8(env)?) } else { None };
    // (concurrency, jobs/s) of the one-worker generation drains
    let mut one_worker = Vec::new();
    for &w in workers {
        for &c in concurrencies {
            db.batch_execute("TRUNCATE steadytext_queue")?;
            let threads = (env.threads / w).max(1);
            let procs = (0..w)
                .map(|i| {
                    let id = format!("bench-w{i}");
                    let c = c.to_string();
                    env.worker(
                        &["--database-url", &url, "--worker-id", &id, "--concurrency", &c],
                        threads,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let mut tx = db.transaction()?;
            let made: i64 = tx.query_one(workload.enqueue_sql().as_str(), &[&n])?.get(0);
            tx.commit()?;
            let start = Instant::now();
            let end = setup::wait_drained(&mut db, Duration::from_secs(3600))?;
            let secs = end.duration_since(start).as_secs_f64();
            drop(procs);
            let (completed, failed, cancelled) = setup::outcome(&mut db)?;
            if completed != made {
                return Err(BenchError::Process(format!(
                    "{completed} of {made} completed ({failed} failed, {cancelled} cancelled)"
                )));
            }
            let mut line = Line::new(&format!("drain_{}", workload.name()))
                .field("jobs", made)
                .field("workers", w)
                .field("concurrency", c)
                .field("threads_per_worker", threads)
                .field("use_cache", false);
            if let Workload::Generate { max_tokens } = workload {
                line = line.field("max_tokens", max_tokens);
                if w == 1 {
                    one_worker.push((c, made as f64 / secs));
                }
            }
            println!(
                "{}",
                line.num("seconds", secs, 2).num("jobs_per_s", made as f64 / secs, 1).with_load()
            );
        }
    }
    if let (Some(before), Workload::Generate { max_tokens }) = (engine_before, workload) {
        let after = engine_batch8(env)?;
        let engine = (before + after) / 2.0;
        for (c, jobs_per_s) in one_worker {
            let tokens_per_s = jobs_per_s * f64::from(max_tokens);
            println!(
                "{}",
                Line::new("drain_generate_vs_engine")
                    .field("workers", 1)
                    .field("concurrency", c)
                    .field("threads", env.threads)
                    .field("max_tokens", max_tokens)
                    .num("drain_tokens_per_s", tokens_per_s, 1)
                    .num("engine_batch8_tokens_per_s", engine, 1)
                    .num("engine_before", before, 1)
                    .num("engine_after", after, 1)
                    .num("ratio", tokens_per_s / engine, 3)
                    .with_load()
            );
        }
    }
    Ok(())
}

/// The engine's batch-of-8 tokens/s (`steadytext bench --generate-only`, its default budget of
/// 32 tokens per prompt) on `env.threads` threads.
fn engine_batch8(env: &Env) -> Result<f64> {
    let threads = env.threads.to_string();
    let out = output(Command::new(&env.steadytext_bin).args([
        "bench",
        "--generate-only",
        "--threads",
        &threads,
    ]))?;
    num(line_starting(&out, "bench generate_batch8")?, "tokens_per_s")
}

/// The raw-SQL anchor of cache-hit drains: claims 10 pending requests at a time as worker
/// `bench-raw` (`steadytext_queue_claim`) and completes them in one statement
/// (`steadytext_queue_complete_many`) with a constant result, until a claim comes back empty.
pub fn raw_sql_drain(db: &mut postgres::Client) -> Result<()> {
    let claim = db.prepare(
        "SELECT array_agg(request_id::text) \
         FROM steadytext_queue_claim('bench-raw', 10, '60 seconds')",
    )?;
    let complete = db.prepare(
        "SELECT steadytext_queue_complete_many('bench-raw', $1::text[]::uuid[], \
                array_fill('cached result'::text, ARRAY[cardinality($1::text[])]))",
    )?;
    loop {
        let ids: Option<Vec<String>> = db.query_one(&claim, &[])?.get(0);
        match ids {
            Some(ids) if !ids.is_empty() => {
                db.query_one(&complete, &[&ids])?;
            }
            _ => return Ok(()),
        }
    }
}

/// The prompt every job of [`run_cached`] asks for (computed once, then a cache hit).
const CACHED_PROMPT: &str = "Drain bench cached prompt";

/// Completion throughput with every result served from the cache: one worker with
/// `concurrency` slots drains `jobs` identical generations after one warm-up job computed the
/// result. Anchor measured in the same run on the same number of rows: a raw-SQL loop from this
/// client claiming 10 at a time (`steadytext_queue_claim`) and completing them in one statement
/// (`steadytext_queue_complete_many`) with a constant result. Prints one line.
pub fn run_cached(env: &Env, jobs: u32, concurrency: u16) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    let n = i32::try_from(jobs).unwrap_or(i32::MAX);
    let enqueue = |db: &mut postgres::Client, n: i32| -> Result<(i64, Instant)> {
        let mut tx = db.transaction()?;
        let made: i64 = tx
            .query_one(
                "SELECT count(steadytext_generate_async($1, 16)) FROM generate_series(1, $2)",
                &[&CACHED_PROMPT, &n],
            )?
            .get(0);
        tx.commit()?;
        Ok((made, Instant::now()))
    };
    let c = concurrency.to_string();
    let worker = env.worker(&["--database-url", &url, "--concurrency", &c], env.threads)?;
    enqueue(&mut db, 1)?; // the warm-up computes the result once
    setup::wait_drained(&mut db, Duration::from_secs(600))?;
    db.batch_execute("TRUNCATE steadytext_queue")?;
    let (made, start) = enqueue(&mut db, n)?;
    let end = setup::wait_drained(&mut db, Duration::from_secs(3600))?;
    let worker_secs = end.duration_since(start).as_secs_f64();
    drop(worker);
    let (completed, ..) = setup::outcome(&mut db)?;
    if completed != made {
        return Err(BenchError::Process(format!("{completed} of {made} completed")));
    }

    db.batch_execute("TRUNCATE steadytext_queue")?;
    let (raw_made, start) = enqueue(&mut db, n)?;
    raw_sql_drain(&mut db)?;
    let raw_secs = start.elapsed().as_secs_f64();
    let worker_rate = made as f64 / worker_secs;
    let raw_rate = raw_made as f64 / raw_secs;
    println!(
        "{}",
        Line::new("drain_cached")
            .field("jobs", made)
            .field("workers", 1)
            .field("concurrency", concurrency)
            .num("seconds", worker_secs, 2)
            .num("jobs_per_s", worker_rate, 1)
            .num("raw_sql_batch10_jobs_per_s", raw_rate, 1)
            .num("ratio", worker_rate / raw_rate, 3)
            .with_load()
    );
    Ok(())
}
