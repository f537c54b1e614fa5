//! Figure: the result cache shared in PostgreSQL. Daemon A (`steadytext serve --database-url`)
//! computes `n` new generations through `steadytext_generate` (misses, stored in
//! `steadytext_result_cache`); daemon B, with its own empty local cache, is then asked the same
//! `n` requests (each a local miss and a shared hit), and once more (local hits). Anchor measured
//! in the same run: the bare `steadytext_result_cache_get` of one key from the same client.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::report::Line;
use crate::setup::{self, Env};
use crate::stats::summarize;

/// Times the three paths over `n` prompts of `max_tokens` tokens; prints one line.
pub fn run(env: &Env, n: u32, max_tokens: i32) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    let a = env.serve(&["--database-url", &url, "--concurrency", "1"])?;
    let b = env.serve(&["--database-url", &url, "--concurrency", "1"])?;
    db.batch_execute("LOAD 'pg_steadytext'")?;
    let stmt = db.prepare("SELECT steadytext_generate($1, $2)")?;
    let prompts: Vec<String> =
        (0..n).map(|i| format!("Shared cache bench prompt {i} says")).collect();
    let mut pass = |daemon: &str| -> Result<Vec<Duration>> {
        db.batch_execute(&format!("SET steadytext.daemon_url = '{daemon}'"))?;
        prompts
            .iter()
            .map(|p| {
                let start = Instant::now();
                db.query_one(&stmt, &[p, &max_tokens])?;
                Ok(start.elapsed())
            })
            .collect()
    };
    let miss = pass(&a.url)?;
    let shared_hit = pass(&b.url)?;
    let local_hit = pass(&b.url)?;
    let keys: Vec<String> = db
        .query("SELECT cache_key FROM steadytext_result_cache", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let get = db.prepare("SELECT result FROM steadytext_result_cache_get(ARRAY[$1])")?;
    let raw = keys
        .iter()
        .map(|k| {
            let start = Instant::now();
            db.query_one(&get, &[k])?;
            Ok(start.elapsed())
        })
        .collect::<Result<Vec<_>>>()?;
    println!(
        "{}",
        Line::new("shared_cache")
            .field("max_tokens", max_tokens)
            .field("requests", n)
            .field("shared_entries", keys.len())
            .field("threads", env.serve_threads())
            .latency("miss", &summarize(&miss)?)
            .latency("shared_hit", &summarize(&shared_hit)?)
            .latency("local_hit", &summarize(&local_hit)?)
            .latency("raw_get", &summarize(&raw)?)
            .with_load()
    );
    Ok(())
}
