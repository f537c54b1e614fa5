//! Figure 3: drain throughput. Workers are started (models loaded) first; then one transaction
//! enqueues every job, and the clock runs from its commit until no job is pending or
//! processing. Jobs use `use_cache := false`, so every one reaches the engine.

use std::time::{Duration, Instant};

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
            }
            println!(
                "{}",
                line.num("seconds", secs, 2).num("jobs_per_s", made as f64 / secs, 1).with_load()
            );
        }
    }
    Ok(())
}
