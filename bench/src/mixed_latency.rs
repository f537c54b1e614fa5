//! Figure 6: latency of short requests beside long ones. `steadytext serve` runs the worker
//! (`--concurrency` and `--max-batch` above the number of long generations, so that a short
//! request always has a slot and a place in the decode batch). First, with nothing else
//! running, `shorts` embeddings and `shorts` 4-token generations are enqueued one at a time,
//! alternating, each waited for (enqueue → its `NOTIFY steadytext_completed`); then `longs`
//! generations of `long_tokens` tokens are enqueued, and once they all decode the same short
//! requests (new texts) are timed again. The mean decode step of the loaded phase comes from
//! `/metrics` (engine seconds of generation / decode steps).

use std::time::{Duration, Instant};

use steadytext_api::metric_names::{DECODE_STEPS, ENGINE_SECONDS, GENERATED_TOKENS};
use steadytext_api::notifications::COMPLETED_CHANNEL;

use crate::completion::{poll, wait_completed};
use crate::daemon::Daemon;
use crate::error::{BenchError, Result};
use crate::report::Line;
use crate::setup::{self, Env};
use crate::stats::{summarize, Summary};

/// How long one short request may take.
const SHORT_DEADLINE: Duration = Duration::from_secs(600);

/// The figure's knobs.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Long generations running meanwhile.
    pub longs: u32,
    /// Tokens of each long generation.
    pub long_tokens: i32,
    /// Embeddings, and 4-token generations, per phase.
    pub shorts: u32,
    /// `--concurrency` of the worker.
    pub concurrency: u16,
    /// `--max-batch` of the engine.
    pub max_batch: u16,
}

/// Latencies of one phase: embeddings, generations.
struct Phase {
    embed: Vec<Duration>,
    generate: Vec<Duration>,
}

impl Phase {
    fn all(&self) -> Vec<Duration> {
        self.embed.iter().chain(&self.generate).copied().collect()
    }
}

/// Runs the figure and prints one line per phase and a summary line.
pub fn run(env: &Env, mix: Mix) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    let (c, b) = (mix.concurrency.to_string(), mix.max_batch.to_string());
    let serve = env.serve(&["--database-url", &url, "--concurrency", &c, "--max-batch", &b])?;
    db.batch_execute(&format!("LISTEN {COMPLETED_CHANNEL}"))?;
    shorts(&mut db, 1, "warm-up")?; // pages both models in
    let idle = shorts(&mut db, mix.shorts, "idle")?;

    let mut tx = db.transaction()?;
    let longs: Vec<String> = (0..mix.longs)
        .map(|i| {
            let row = tx.query_one(
                "SELECT steadytext_generate_async('Mixed bench long story number ' || $1::text || ':',
                                                  $2, use_cache => false)::text",
                &[&i.to_string(), &mix.long_tokens],
            )?;
            Ok(row.get(0))
        })
        .collect::<Result<_>>()?;
    tx.commit()?;
    // every long one is claimed and has decoded a few tokens (prefills done)
    let tokens0 = serve.counter(GENERATED_TOKENS)?;
    poll(Duration::from_secs(600), "the long generations to decode", || {
        let processing: i64 = db
            .query_one(
                "SELECT count(*) FROM steadytext_queue
                 WHERE request_id::text = ANY($1) AND status = 'processing'",
                &[&longs],
            )?
            .get(0);
        let tokens = serve.counter(GENERATED_TOKENS)?;
        Ok((processing == i64::from(mix.longs) && tokens >= tokens0 + 4.0 * f64::from(mix.longs))
            .then_some(()))
    })?;
    let (steps0, secs0) = step_counters(&serve)?;
    let loaded = shorts(&mut db, mix.shorts, "loaded")?;
    let (steps1, secs1) = step_counters(&serve)?;
    let still: i64 = db
        .query_one(
            "SELECT count(*) FROM steadytext_queue
             WHERE request_id::text = ANY($1) AND status = 'processing'",
            &[&longs],
        )?
        .get(0);
    if still < i64::from(mix.longs) {
        return Err(BenchError::Process(format!(
            "only {still} of {} long generations still ran at the end; use more --long-tokens",
            mix.longs
        )));
    }
    let step_ms = (secs1 - secs0) / (steps1 - steps0).max(1.0) * 1000.0;

    let line = |phase: &str, p: &Phase| -> Result<Line> {
        Ok(Line::new("mixed_latency")
            .field("phase", phase)
            .field("long_generations", if phase == "idle" { 0 } else { mix.longs })
            .field("long_tokens", mix.long_tokens)
            .field("concurrency", mix.concurrency)
            .field("max_batch", mix.max_batch)
            .field("threads", env.serve_threads())
            .latency("short", &summarize(&p.all())?)
            .latency("embed", &summarize(&p.embed)?)
            .latency("generate4", &summarize(&p.generate)?))
    };
    println!("{}", line("idle", &idle)?.with_load());
    println!("{}", line("beside_long", &loaded)?.num("decode_step_ms", step_ms, 1).with_load());
    let (idle_s, loaded_s): (Summary, Summary) =
        (summarize(&idle.all())?, summarize(&loaded.all())?);
    let target = 3.0 * idle_s.p95 + step_ms;
    println!(
        "{}",
        Line::new("mixed_latency_target")
            .num("idle_short_p95_ms", idle_s.p95, 2)
            .num("decode_step_ms", step_ms, 1)
            .num("target_p95_ms", target, 2)
            .num("beside_long_short_p95_ms", loaded_s.p95, 2)
            .num("ratio_to_target", loaded_s.p95 / target, 2)
            .with_load()
    );
    Ok(())
}

/// (decode steps, engine seconds of generation) from `/metrics`.
fn step_counters(serve: &Daemon) -> Result<(f64, f64)> {
    let text = serve.get("/metrics")?;
    let value = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse::<f64>().ok()))
            .unwrap_or(0.0)
    };
    Ok((
        value(&format!("{DECODE_STEPS} ")),
        value(&format!("{ENGINE_SECONDS}{{kind=\"generate\"}} ")),
    ))
}

/// Enqueues `n` embeddings and `n` 4-token generations one at a time, alternating, each with
/// a new text, and times each from the enqueue to its completion notification.
fn shorts(db: &mut postgres::Client, n: u32, tag: &str) -> Result<Phase> {
    let mut phase = Phase { embed: Vec::new(), generate: Vec::new() };
    for i in 0..n {
        for embed in [true, false] {
            let sql = if embed {
                "SELECT steadytext_embed_async('Mixed bench ' || $1 || ' sentence ' || $2,
                                               use_cache => false)::text"
            } else {
                "SELECT steadytext_generate_async('Mixed bench ' || $1 || ' prompt ' || $2, 4,
                                                  use_cache => false)::text"
            };
            let start = Instant::now();
            let id: String = db.query_one(sql, &[&tag, &i.to_string()])?.get(0);
            let done = wait_completed(db, &id, SHORT_DEADLINE)?;
            let took = done.duration_since(start);
            if embed {
                phase.embed.push(took)
            } else {
                phase.generate.push(took)
            }
        }
    }
    Ok(phase)
}
