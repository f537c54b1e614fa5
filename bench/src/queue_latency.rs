//! Figure 2: what the queue adds. (a) Round trip of a cache-hit generation request: enqueue →
//! `NOTIFY steadytext_completed` seen by the client, with `steadytext serve` running the worker.
//! (b) `steadytext_get_async_result` wake-up latency: from the commit of the completing
//! transaction (`pg_xact_commit_timestamp`) to the waiting call returning; the benchmark itself
//! claims and completes the request after a delay, so the waiter has been waiting for a while.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use steadytext_api::notifications::COMPLETED_CHANNEL;

use crate::completion::wait_completed;
use crate::error::{BenchError, Result};
use crate::report::Line;
use crate::setup::{self, Env};
use crate::stats::{summarize, summarize_ms};

/// The request every round trip enqueues (after one warm-up run fills the cache).
const PROMPT: &str = "The queue round trip benchmark prompt";

/// Runs (a) over `jobs` requests and prints its line.
pub fn round_trip(env: &Env, jobs: u32) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    let _serve = env.serve(&["--database-url", &url, "--concurrency", "1"])?;
    db.batch_execute(&format!("LISTEN {COMPLETED_CHANNEL}"))?;
    let enqueue = db.prepare("SELECT steadytext_generate_async($1, 16)::text")?;
    let one = |db: &mut postgres::Client| -> Result<Duration> {
        let start = Instant::now();
        let id: String = db.query_one(&enqueue, &[&PROMPT])?.get(0);
        Ok(wait_completed(db, &id, Duration::from_secs(120))?.duration_since(start))
    };
    let cold = one(&mut db)?; // warm-up: generates and fills the cache
    let samples = (0..jobs).map(|_| one(&mut db)).collect::<Result<Vec<_>>>()?;
    let hits: i64 = db
        .query_one(
            "SELECT count(DISTINCT result) FROM steadytext_queue WHERE status = 'completed'",
            &[],
        )?
        .get(0);
    if hits != 1 {
        return Err(BenchError::Process(format!("{hits} distinct results for one request")));
    }
    let s = summarize(&samples)?;
    println!(
        "{}",
        Line::new("queue_round_trip_cache_hit")
            .field("jobs", jobs)
            .field("max_tokens", 16)
            .field("worker_concurrency", 1)
            .num("first_uncached_ms", cold.as_secs_f64() * 1000.0, 2)
            .latency("rt", &s)
            .with_load()
    );
    Ok(())
}

/// Runs (b) over `samples` waits, each completed 50–1049 ms after the wait began, with the
/// library in `shared_preload_libraries` (waiters woken through shared memory) and without
/// (waiters poll); prints one line each.
pub fn wake(samples: u32) -> Result<()> {
    wake_with(samples, true)?;
    wake_with(samples, false)
}

fn wake_with(samples: u32, preloaded: bool) -> Result<()> {
    let (cluster, db) = if preloaded {
        setup::cluster_with(&["shared_preload_libraries=pg_steadytext"])?
    } else {
        setup::cluster()?
    };
    let mut db = db;
    db.batch_execute("ALTER SYSTEM SET track_commit_timestamp = on")?;
    drop(db);
    cluster.restart();
    let mut db = cluster.connect();
    let on: String = db.query_one("SHOW track_commit_timestamp", &[])?.get(0);
    if on != "on" {
        return Err(BenchError::Process("track_commit_timestamp did not turn on".into()));
    }
    let mut waiter_db = Some(cluster.connect());
    let mut lat = Vec::new();
    let mut min_delay = u64::MAX;
    let mut max_delay = 0;
    for i in 0..u64::from(samples) {
        let id: String = db
            .query_one(
                "SELECT steadytext_generate_async('wake bench ' || $1::text, 16)::text",
                &[&i.to_string()],
            )?
            .get(0);
        let claimed =
            db.query("SELECT request_id FROM steadytext_queue_claim('bench-waker', 1)", &[])?;
        if claimed.len() != 1 {
            return Err(BenchError::Process(format!("claimed {} requests", claimed.len())));
        }
        let mut w = waiter_db.take().expect("the waiter connection is back");
        let waiter_id = id.clone();
        let waiter = std::thread::spawn(move || -> Result<(postgres::Client, f64)> {
            w.query_one("SELECT steadytext_get_async_result($1::text::uuid, 60)", &[&waiter_id])?;
            let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            Ok((w, t.as_secs_f64()))
        });
        // a fixed, spread-out sequence of delays (no randomness: reruns wait the same way)
        let delay = 50 + (i * 397) % 1000;
        min_delay = min_delay.min(delay);
        max_delay = max_delay.max(delay);
        std::thread::sleep(Duration::from_millis(delay));
        let ok: bool = db
            .query_one(
                "SELECT steadytext_queue_complete($1::text::uuid, 'bench-waker', 'done')",
                &[&id],
            )?
            .get(0);
        if !ok {
            return Err(BenchError::Process(format!("could not complete {id}")));
        }
        // the waiter returns first: asking for the commit time before would put one more
        // backend and client on the two cores while the waiter wakes
        let (w, returned) =
            waiter.join().map_err(|_| BenchError::Process("waiter thread panicked".into()))??;
        let commit: f64 = db
            .query_one(
                "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8
                 FROM steadytext_queue WHERE request_id = $1::text::uuid",
                &[&id],
            )?
            .get(0);
        waiter_db = Some(w);
        lat.push((returned - commit) * 1000.0);
    }
    let s = summarize_ms(&lat)?;
    println!(
        "{}",
        Line::new("get_async_result_wakeup")
            .field("preloaded", preloaded)
            .field("samples", samples)
            .field("waited_before_commit_ms", format!("{min_delay}..{max_delay}"))
            .latency("wake", &s)
            .with_load()
    );
    Ok(())
}
