//! Figure 7: how soon a cancelled running generation frees the engine. `steadytext serve` runs
//! the worker with `--concurrency 1`. Each round enqueues a `long_tokens` generation, waits until
//! it decodes, enqueues a 1-token generation (it waits for the only slot), then calls
//! `steadytext_cancel_async` on the long one and times the cancel → the short one's completion
//! notification. The tokens the long generation still decoded after the cancel are read from
//! `/metrics` (generated tokens after − before − the short one's), as is the count of stopped
//! requests. The anchor, measured in the same run: the same 1-token request on an idle worker
//! (enqueue → completion), and the mean decode step of a lone generation.

use std::time::{Duration, Instant};

use steadytext_api::metric_names::{
    DECODE_STEPS, ENGINE_ABANDONED, ENGINE_SECONDS, GENERATED_TOKENS,
};
use steadytext_api::notifications::COMPLETED_CHANNEL;

use crate::completion::{poll, wait_completed};
use crate::error::{BenchError, Result};
use crate::report::Line;
use crate::setup::{self, Env};
use crate::stats::{summarize, summarize_ms};

/// Runs `rounds` cancellations of `long_tokens`-token generations and prints one line.
pub fn run(env: &Env, rounds: u32, long_tokens: i32) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    let serve = env.serve(&["--database-url", &url, "--concurrency", "1"])?;
    db.batch_execute(&format!("LISTEN {COMPLETED_CHANNEL}"))?;
    let short = "SELECT steadytext_generate_async('Cancel bench short ' || $1, 1,
                                                  use_cache => false)::text";
    let deadline = Duration::from_secs(600);
    // anchor: a 1-token request with the engine idle
    let mut alone = Vec::new();
    for i in 0..=rounds {
        let start = Instant::now();
        let id: String = db.query_one(short, &[&format!("alone {i}")])?.get(0);
        let done = wait_completed(&mut db, &id, deadline)?;
        if i > 0 {
            alone.push(done.duration_since(start)); // the first one pages the model in
        }
    }
    let tokens = GENERATED_TOKENS;
    let (mut release, mut after) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let long: String = db
            .query_one(
                "SELECT steadytext_generate_async('Cancel bench long story ' || $1 || ':', $2,
                                                  use_cache => false)::text",
                &[&r.to_string(), &long_tokens],
            )?
            .get(0);
        let before_long = serve.counter(tokens)?;
        poll(deadline, "the long generation to decode", || {
            Ok((serve.counter(tokens)? >= before_long + 8.0).then_some(()))
        })?;
        let next: String = db.query_one(short, &[&format!("next {r}")])?.get(0);
        let before = serve.counter(tokens)?;
        let start = Instant::now();
        let cancelled: bool =
            db.query_one("SELECT steadytext_cancel_async($1::text::uuid)", &[&long])?.get(0);
        if !cancelled {
            return Err(BenchError::Process(format!("{long} had ended before its cancel")));
        }
        let done = wait_completed(&mut db, &next, deadline)?;
        release.push(done.duration_since(start));
        let decoded = serve.counter(tokens)? - before;
        after.push((decoded - 1.0).max(0.0)); // the short request's one token
    }
    // nearly all decode steps of the run are the lone long generations'
    let steps = serve.counter(DECODE_STEPS)?;
    let step = generate_seconds(&serve.get("/metrics")?) / steps.max(1.0) * 1000.0;
    let stopped = serve.counter(ENGINE_ABANDONED)?;
    let rel = summarize(&release)?;
    let anchor = summarize(&alone)?;
    let tail = summarize_ms(&after)?;
    println!(
        "{}",
        Line::new("cancel_release")
            .field("rounds", rounds)
            .field("long_tokens", long_tokens)
            .field("concurrency", 1)
            .field("threads", env.serve_threads())
            .latency("cancel_to_next_done", &rel)
            .latency("next_alone", &anchor)
            .num("decode_step_ms", step, 1)
            .num("release_p95_steps", (rel.p95 - anchor.p50).max(0.0) / step, 2)
            .num("tokens_after_cancel_p50", tail.p50, 0)
            .num("tokens_after_cancel_max", tail.max, 0)
            .num("engine_abandoned_total", stopped, 0)
            .with_load()
    );
    Ok(())
}

/// Engine seconds of decode steps (`kind="generate"`) in a `/metrics` text.
fn generate_seconds(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{ENGINE_SECONDS}{{kind=\"generate\"}} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
