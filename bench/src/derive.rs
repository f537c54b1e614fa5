//! Derivations (README "Keep embeddings and summaries in sync"), each figure with its anchor in
//! the same run:
//! * `derive_write_overhead`: single-row INSERTs into a table with an embedding derivation,
//!   against the hand-written floor (the same table with an AFTER ROW trigger that calls
//!   `steadytext_embed_async` and records the id in a side table, as the upstream docs do),
//!   interleaved in rounds; and a bulk `INSERT … SELECT` against the same statement into a table
//!   with no trigger at all. No worker runs.
//! * `derive_freshness`: an idle worker; UPDATEs of one row's text one after another, each timed
//!   from the UPDATE to the notification of the completion that wrote the new embedding into the
//!   row (the worker turns the recorded change into a request first); against the idle
//!   `steadytext_embed_async` round trip of texts of the same length,
//!   interleaved. A polling loop run every second would add half a second on average to the
//!   round trip (reported as such, not measured).
//! * `derive_backfill`: a table of short rows declared at once; rows/s until all are in sync,
//!   against draining the same texts enqueued with `steadytext_embed_batch_async`, with the
//!   same worker, half of them before the derivation and half after.
//! * `derive_edit_one_paragraph`: a 20-paragraph document with a chunked embedding; one
//!   paragraph edited; how many chunks reached the engine (the daemon's embedded-texts counter).

use std::time::{Duration, Instant};

use steadytext_api::metric_names::EMBEDDED_TEXTS;
use steadytext_api::notifications::{Outcome, COMPLETED_CHANNEL};
use steadytext_testkit::document;

use crate::completion::{wait_completed, wait_completion};
use crate::error::{BenchError, Result};
use crate::report::Line;
use crate::setup::{self, Env};
use crate::stats::summarize;

/// The hand-written floor: a row trigger that enqueues and records the request id.
const FLOOR: &str = "
    CREATE TABLE floor_docs (id bigint PRIMARY KEY, body text NOT NULL, embedding real[]);
    CREATE TABLE floor_requests (doc_id bigint NOT NULL, request_id uuid NOT NULL);
    CREATE FUNCTION floor_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO floor_requests VALUES (NEW.id, steadytext_embed_async(NEW.body));
        RETURN NEW;
    END $$;
    CREATE TRIGGER floor_enqueue AFTER INSERT ON floor_docs
        FOR EACH ROW EXECUTE FUNCTION floor_enqueue();
    CREATE TABLE derived_docs (id bigint PRIMARY KEY, body text NOT NULL, embedding real[]);
    SELECT steadytext_derive('derived_docs', 'embedding', 'body');
    CREATE TABLE plain_docs (id bigint PRIMARY KEY, body text NOT NULL, embedding real[]);";

/// Single-row INSERTs per variant in each round.
const ROUND: i64 = 250;

/// Runs `derive_write_overhead`: `singles` single-row INSERTs per variant and a bulk INSERT of
/// `bulk` rows.
pub fn write_overhead(singles: u32, bulk: u32) -> Result<()> {
    let (_cluster, mut db) = setup::cluster()?;
    db.batch_execute(FLOOR)?;
    let tables = ["derived_docs", "floor_docs", "plain_docs"];
    let statements = tables
        .iter()
        .map(|t| db.prepare(&format!("INSERT INTO {t} (id, body) VALUES ($1, $2)")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut secs = [0.0f64; 3];
    let total = i64::from(singles);
    let mut done = 0;
    while done < total {
        let round = ROUND.min(total - done);
        for (i, statement) in statements.iter().enumerate() {
            let start = Instant::now();
            for id in done..done + round {
                let body = format!("Write overhead document {id}");
                db.execute(statement, &[&id, &body])?;
            }
            secs[i] += start.elapsed().as_secs_f64();
        }
        done += round;
    }
    // the floor's rows are requests; the derivation's are recorded changes, which a worker
    // (none runs here) would turn into requests
    let queued: i64 = db
        .query_one(
            "SELECT (SELECT count(*) FROM steadytext_queue) \
                    + (SELECT count(*) FROM steadytext_derivation_changes)",
            &[],
        )?
        .get(0);
    if queued != 2 * total {
        return Err(BenchError::Process(format!(
            "{queued} requests and changes for {} rows",
            2 * total
        )));
    }
    let per_s = |s: f64| total as f64 / s;
    println!(
        "{}",
        Line::new("derive_write_overhead_single")
            .field("rows", total)
            .field("mode", "autocommit_prepared_interleaved")
            .num("derived_rows_per_s", per_s(secs[0]), 0)
            .num("floor_rows_per_s", per_s(secs[1]), 0)
            .num("no_trigger_rows_per_s", per_s(secs[2]), 0)
            .num("derived_vs_floor", secs[1] / secs[0], 2)
            .with_load()
    );
    // bulk: the same INSERT … SELECT into the derived table and into the plain one, alternated
    let mut bulk_secs = [0.0f64; 2];
    for repeat in 0..3 {
        for (i, t) in ["derived_docs", "plain_docs"].iter().enumerate() {
            db.batch_execute(&format!("TRUNCATE {t}; TRUNCATE steadytext_queue"))?;
            db.batch_execute("CHECKPOINT")?;
            let start = Instant::now();
            db.execute(
                &format!(
                    "INSERT INTO {t} (id, body) SELECT i, 'Bulk document ' || i || ' of run {repeat}' \
                     FROM generate_series(1, $1::bigint) AS i"
                ),
                &[&i64::from(bulk)],
            )?;
            bulk_secs[i] += start.elapsed().as_secs_f64();
        }
    }
    let enqueued: i64 = db.query_one("SELECT count(*) FROM steadytext_queue", &[])?.get(0);
    let enqueued_derived: i64 =
        db.query_one("SELECT count(*) FROM steadytext_derivation_rows", &[])?.get(0);
    println!(
        "{}",
        Line::new("derive_write_overhead_bulk")
            .field("rows", bulk)
            .field("repeats", 3)
            .field("requests_enqueued_last_plain_run", enqueued)
            .field("rows_recorded", enqueued_derived)
            .num("derived_seconds", bulk_secs[0] / 3.0, 3)
            .num("no_trigger_seconds", bulk_secs[1] / 3.0, 3)
            .num("derived_vs_no_trigger", bulk_secs[1] / bulk_secs[0], 2)
            .with_load()
    );
    Ok(())
}

/// Runs `derive_freshness` over `samples` UPDATEs (and as many anchor round trips).
pub fn freshness(env: &Env, samples: u32) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    db.batch_execute(
        "CREATE TABLE fresh_docs (id bigint PRIMARY KEY, body text NOT NULL, embedding real[]);
         INSERT INTO fresh_docs VALUES (1, 'Freshness sample start', NULL);
         SELECT steadytext_derive('fresh_docs', 'embedding', 'body');",
    )?;
    let serve = env.serve(&["--database-url", &url])?;
    db.batch_execute(&format!("ALTER SYSTEM SET steadytext.daemon_url = '{}'", serve.url))?;
    db.batch_execute("SELECT pg_reload_conf()")?;
    let mut wait = setup::reconnect(&cluster, cluster.connect())?;
    wait.batch_execute("SELECT steadytext_derivation_wait('fresh_docs', 'embedding', 120)")?;
    db.batch_execute(&format!("LISTEN {COMPLETED_CHANNEL}"))?;
    let update = db.prepare("UPDATE fresh_docs SET body = $1 WHERE id = 1")?;
    let in_sync = db.prepare(
        "SELECT coalesce((SELECT derived_hash = sha256(convert_to($1, 'UTF8')) \
                                 AND request_id IS NULL \
                          FROM steadytext_derivation_rows WHERE source_key = '{\"id\": 1}'), false)",
    )?;
    let anchor = db.prepare("SELECT steadytext_embed_async($1)::text")?;
    let deadline = Duration::from_secs(60);
    let (mut derived, mut round_trip) = (Vec::new(), Vec::new());
    for i in 0..samples {
        // the same length both ways, a cache miss each time
        let start = Instant::now();
        let text = format!("Freshness sample text {i:06}");
        db.execute(&update, &[&text])?;
        derived.push(wait_in_sync(&mut db, &in_sync, &text, deadline)?.duration_since(start));
        let start = Instant::now();
        let id: String = db.query_one(&anchor, &[&format!("Freshness anchor text {i:06}")])?.get(0);
        round_trip.push(wait_completed(&mut db, &id, deadline)?.duration_since(start));
    }
    let fresh: Option<bool> = wait
        .query_one("SELECT embedding = steadytext_embed(body) FROM fresh_docs WHERE id = 1", &[])?
        .get(0);
    if fresh != Some(true) {
        return Err(BenchError::Process("the row's embedding is not its text's".into()));
    }
    let (d, r) = (summarize(&derived)?, summarize(&round_trip)?);
    println!(
        "{}",
        Line::new("derive_freshness")
            .field("updates", samples)
            .field("threads", env.serve_threads())
            .latency("derived", &d)
            .latency("embed_async_round_trip", &r)
            .num("p50_over_round_trip_ms", d.p50 - r.p50, 2)
            .num("polling_1s_expected_p50_ms", r.p50 + 500.0, 0)
            .with_load()
    );
    Ok(())
}

/// Seconds one worker takes to drain the texts `first..=last` of `texts` (a query of `(i,
/// text)` over `$1..=$2`) enqueued with `steadytext_embed_batch_async`, 1 000 per call, without
/// the result cache.
fn drain_embed_batch(
    env: &Env,
    url: &str,
    db: &mut postgres::Client,
    texts: &str,
    first: i64,
    last: i64,
) -> Result<f64> {
    let serve = env.serve(&["--database-url", url, "--worker-id", "anchor"])?;
    let mut tx = db.transaction()?;
    tx.execute(
        &format!(
            "SELECT sum(cardinality(steadytext_embed_batch_async(b.texts, false))) \
             FROM (SELECT array_agg(t ORDER BY i) AS texts FROM ({texts}) AS s(i, t) \
                   GROUP BY (i - 1) / 1000) AS b"
        ),
        &[&first, &last],
    )?;
    tx.commit()?;
    let start = Instant::now();
    let end = setup::wait_drained(db, Duration::from_secs(7200))?;
    drop(serve);
    Ok(end.duration_since(start).as_secs_f64())
}

/// Waits (up to `deadline`) for the completion notification after which `in_sync` (one
/// boolean, for the input `text`) says the row holds the result of `text`, and returns when
/// that notification arrived: the worker first turns the recorded change into a request, so
/// its id is not known when the UPDATE commits.
fn wait_in_sync(
    db: &mut postgres::Client,
    in_sync: &postgres::Statement,
    text: &str,
    deadline: Duration,
) -> Result<Instant> {
    wait_completion(db, deadline, &format!("\"{text}\""), |db, notice| {
        Ok(notice.status == Outcome::Completed
            && db.query_one(in_sync, &[&text])?.get::<_, bool>(0))
    })
}

/// The raw llama.cpp embedding anchor: `bench/llama-raw/embed.cpp` built, and the model.
pub struct RawEmbed {
    /// `llama-raw-embed`.
    pub bin: std::path::PathBuf,
    /// The embedding model's GGUF.
    pub model: std::path::PathBuf,
}

/// Texts per llama.cpp call the raw anchor tries (the best counts: one call's attention spans
/// all its tokens, so the fastest size depends on the machine).
const RAW_BATCHES: [u32; 3] = [8, 16, 32];

/// Texts the raw anchor embeds at each batch size: the first of the backfill's texts (a rate,
/// measured in a few seconds rather than the backfill's minutes, at each size).
const RAW_TEXTS: u32 = 20_000;

/// Texts/s of the raw program embedding the first of the backfill's `rows` texts, at its best
/// batch size, and that size.
fn raw_embed(raw: &RawEmbed, threads: usize, rows: u32) -> Result<(f64, u32)> {
    let rows = rows.min(RAW_TEXTS);
    let mut best = (0.0_f64, 0);
    for batch in RAW_BATCHES {
        let out = std::process::Command::new(&raw.bin)
            .arg(&raw.model)
            .args([threads.to_string(), rows.to_string(), batch.to_string()])
            .output()
            .map_err(|e| BenchError::Process(format!("{}: {e}", raw.bin.display())))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let rate = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("texts_per_s="))
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| {
                BenchError::Process(format!(
                    "{}: {text}{}",
                    raw.bin.display(),
                    String::from_utf8_lossy(&out.stderr)
                ))
            })?;
        if rate > best.0 {
            best = (rate, batch);
        }
    }
    Ok(best)
}

/// Runs `derive_backfill` over `rows` short rows; with `raw`, the raw llama.cpp anchor too.
pub fn backfill(env: &Env, rows: u32, raw: Option<&RawEmbed>) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    let n = i64::from(rows);
    let texts = "SELECT i, 'Backfill row number ' || i || ' of the benchmark' \
                 FROM generate_series($1::bigint, $2::bigint) AS i";
    // the anchor in two halves, one before the derivation and one after (the same texts
    // through steadytext_embed_batch_async, 1 000 per call, drained by one worker), so that a
    // machine whose speed drifts during the minutes each side takes weighs on both alike
    let half = n / 2;
    let mut anchor_secs = drain_embed_batch(env, &url, &mut db, texts, 1, half)?;
    // the derivation: rows inserted, then declared at once; the worker walks them in
    db.batch_execute("TRUNCATE steadytext_queue")?;
    db.batch_execute(
        "CREATE TABLE backfill_docs (id bigint PRIMARY KEY, body text NOT NULL, embedding real[])",
    )?;
    db.execute(
        &format!("INSERT INTO backfill_docs SELECT i, t FROM ({texts}) AS s(i, t)"),
        &[&1_i64, &n],
    )?;
    let serve = env.serve(&["--database-url", &url, "--worker-id", "derive"])?;
    // cache misses both ways: the anchor ran with use_cache false, the derivation likewise
    let start = Instant::now();
    db.batch_execute(
        "SELECT steadytext_derive('backfill_docs', 'embedding', 'body', 'embed', '{\"use_cache\": false}')",
    )?;
    db.batch_execute("SELECT steadytext_derivation_wait('backfill_docs', 'embedding', 7200)")?;
    let derive_secs = start.elapsed().as_secs_f64();
    let in_sync: i64 =
        db.query_one("SELECT count(*) FROM backfill_docs WHERE embedding IS NOT NULL", &[])?.get(0);
    if in_sync != n {
        return Err(BenchError::Process(format!("{in_sync} of {n} rows derived")));
    }
    drop(serve);
    db.batch_execute("TRUNCATE steadytext_queue")?;
    anchor_secs += drain_embed_batch(env, &url, &mut db, texts, half + 1, n)?;
    let raw = match raw {
        Some(raw) => Some(raw_embed(raw, env.threads, rows)?),
        None => None,
    };
    let mut line = Line::new("derive_backfill");
    if let Some((rate, batch)) = raw {
        line = line
            .num("raw_llama_cpp_texts_per_s", rate, 1)
            .field("raw_llama_cpp_batch", batch)
            .num("derive_vs_raw_llama_cpp", n as f64 / derive_secs / rate, 2);
    }
    println!(
        "{}",
        line.field("rows", n)
            .field("threads", env.serve_threads())
            .num("derive_seconds", derive_secs, 1)
            .num("derive_rows_per_s", n as f64 / derive_secs, 1)
            .num("embed_batch_async_seconds", anchor_secs, 1)
            .num("embed_batch_async_rows_per_s", n as f64 / anchor_secs, 1)
            .num("derive_vs_embed_batch_async", anchor_secs / derive_secs, 2)
            .with_load()
    );
    Ok(())
}

/// Runs `derive_edit_one_paragraph`.
pub fn edit_one_paragraph(env: &Env) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    let url = cluster.url("postgres");
    let serve = env.serve(&["--database-url", &url])?;
    db.batch_execute("CREATE TABLE manuals (id bigint PRIMARY KEY, body text NOT NULL)")?;
    db.execute("INSERT INTO manuals VALUES (1, $1)", &[&document::paragraphs(20, None)])?;
    // two transactions: the workers see the derivation once it is committed
    db.batch_execute(
        "SELECT steadytext_derive('manuals', 'manual_chunks', 'body', 'embed_chunks',
                                  '{\"chunk_tokens\": 64, \"chunk_overlap\": 8}')",
    )?;
    db.batch_execute("SELECT steadytext_derivation_wait('manuals', 'manual_chunks', 600)")?;
    let counter = |d: &crate::daemon::Daemon| -> Result<f64> {
        d.counter(EMBEDDED_TEXTS).map_err(|e| BenchError::Process(e.to_string()))
    };
    let chunks: i64 = db.query_one("SELECT count(*) FROM manual_chunks", &[])?.get(0);
    let before = counter(&serve)?;
    db.execute("UPDATE manuals SET body = $1 WHERE id = 1", &[&document::paragraphs(20, Some(7))])?;
    db.batch_execute("SELECT steadytext_derivation_wait('manuals', 'manual_chunks', 600)")?;
    let computed = counter(&serve)? - before;
    println!(
        "{}",
        Line::new("derive_edit_one_paragraph")
            .field("paragraphs", 20)
            .field("chunks", chunks)
            .num("chunks_computed_after_edit", computed, 0)
            .with_load()
    );
    Ok(())
}
