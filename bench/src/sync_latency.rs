//! Figure 4: latency of the synchronous `steadytext_generate` through the daemon, on a cache hit
//! (the same request after one warm-up call) and on a cache miss (a new prompt every call).

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::report::Line;
use crate::setup::{self, Env};
use crate::stats::summarize;

/// Times `hits` cache hits and `misses` cache misses of `max_tokens` tokens; prints two lines.
pub fn run(env: &Env, hits: u32, misses: u32, max_tokens: i32) -> Result<()> {
    let (_cluster, db) = setup::cluster()?;
    let serve = env.serve(&[])?;
    let mut db = db;
    // the extension's settings exist once its library is loaded in this session
    db.batch_execute("LOAD 'pg_steadytext'")?;
    db.batch_execute(&format!("ALTER SYSTEM SET steadytext.daemon_url = '{}'", serve.url))?;
    db.batch_execute("SELECT pg_reload_conf()")?;
    db.batch_execute(&format!("SET steadytext.daemon_url = '{}'", serve.url))?;
    let stmt = db.prepare("SELECT steadytext_generate($1, $2)")?;
    let mut time = |prompt: &str| -> Result<Duration> {
        let start = Instant::now();
        db.query_one(&stmt, &[&prompt, &max_tokens])?;
        Ok(start.elapsed())
    };
    time("Sync bench miss warm-up")?; // pages the model in
    let miss = (0..misses)
        .map(|i| time(&format!("Sync bench prompt number {i} says")))
        .collect::<Result<Vec<_>>>()?;
    time("Sync bench cached prompt")?;
    let hit = (0..hits).map(|_| time("Sync bench cached prompt")).collect::<Result<Vec<_>>>()?;
    for (name, samples) in [("sync_generate_cache_hit", hit), ("sync_generate_cache_miss", miss)] {
        let s = summarize(&samples)?;
        println!(
            "{}",
            Line::new(name)
                .field("max_tokens", max_tokens)
                .field("threads", env.serve_threads())
                .latency("call", &s)
                .with_load()
        );
    }
    Ok(())
}
