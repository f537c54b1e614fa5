//! Figure 1: enqueue throughput of `steadytext_generate_async` next to PostgreSQL's own floor,
//! measured in the same run from the same client: an `INSERT` into a plain table of the queue's
//! shape (`LIKE steadytext_queue INCLUDING ALL`: same columns, defaults, constraints, indexes)
//! plus `pg_notify`. Single statements (autocommit, prepared; one connection each) into an empty
//! queue, into one already holding `deep` pending requests (a second database), and the floor,
//! interleaved in rounds; then one `INSERT … SELECT` of `jobs` rows both ways, and the same rows
//! through one `steadytext_generate_batch_async` call, alternated and repeated. No worker runs,
//! so every job stays pending.

use std::time::Instant;

use crate::error::Result;
use crate::report::Line;
use crate::setup;

/// The floor's table: the queue's shape without its functions, row-level security or limit.
const PLAIN_TABLE: &str = "CREATE TABLE bench_plain (LIKE steadytext_queue INCLUDING ALL)";

/// One floor statement: insert a row as the enqueue function would, and notify.
const PLAIN_SINGLE: &str = "WITH r AS (
        INSERT INTO bench_plain (function_name, parameters, priority, max_retries)
        VALUES ('generate', jsonb_build_object('prompt', $1::text, 'max_tokens', 16,
                'use_cache', true, 'seed', 42), 0, 3)
        RETURNING request_id)
    SELECT request_id, pg_notify('bench_plain', '') FROM r";

/// The floor of a bulk enqueue: `$1` rows in one statement, and one notification.
const PLAIN_BULK: &str = "WITH r AS (
        INSERT INTO bench_plain (function_name, parameters, priority, max_retries)
        SELECT 'generate', jsonb_build_object('prompt', 'Enqueue bench prompt ' || i,
               'max_tokens', 16, 'use_cache', true, 'seed', 42), 0, 3
        FROM generate_series(1, $1) AS i
        RETURNING request_id)
    SELECT count(request_id), pg_notify('bench_plain', '') FROM r";

/// Calls per variant in each round of the interleaved single-statement measurement.
const ROUND: i32 = 500;

/// Bulk measurements of each variant, alternated; their times are summed.
const BULK_REPEATS: u32 = 3;

/// Times `n` autocommit executions of each prepared single-statement variant (`sql` with one
/// text argument, on its own connection), interleaved in rounds of [`ROUND`] calls so that the
/// machine's drift during the run touches every variant alike; returns seconds per variant.
fn time_interleaved(variants: &mut [(&mut postgres::Client, &str)], n: i32) -> Result<Vec<f64>> {
    let mut statements = Vec::new();
    for (db, sql) in variants.iter_mut() {
        statements.push(db.prepare(sql)?);
    }
    let mut secs = vec![0.0; variants.len()];
    let mut done = 0;
    while done < n {
        let round = ROUND.min(n - done);
        for (i, (db, _)) in variants.iter_mut().enumerate() {
            let start = Instant::now();
            for k in done..done + round {
                db.query_one(&statements[i], &[&format!("Enqueue bench prompt {k}")])?;
            }
            secs[i] += start.elapsed().as_secs_f64();
        }
        done += round;
    }
    Ok(secs)
}

/// The line of one single-statement variant.
fn single_line(name: &str, n: i32, secs: f64, queued_before: i64) -> Line {
    Line::new(name)
        .field("jobs", n)
        .field("pending_before", queued_before)
        .field("clients", 1)
        .field("mode", "autocommit_prepared_interleaved")
        .num("seconds", secs, 3)
        .num("jobs_per_s", f64::from(n) / secs, 0)
        .num("mean_ms", secs * 1000.0 / f64::from(n), 3)
}

/// Empties the queue and the plain table (a truncate, so no dead rows stay behind).
fn empty(db: &mut postgres::Client) -> Result<()> {
    db.batch_execute("TRUNCATE steadytext_queue, bench_plain")?;
    Ok(())
}

/// Runs one bulk statement (`sql`, `$1` = rows) after emptying the tables; returns its seconds
/// and the rows it reported.
fn time_bulk(db: &mut postgres::Client, sql: &str, n: i32) -> Result<(f64, i64)> {
    empty(db)?;
    let start = Instant::now();
    let made: i64 = db.query_one(sql, &[&n])?.get(0);
    Ok((start.elapsed().as_secs_f64(), made))
}

/// Enqueues `jobs` requests each way (and fills a second database's queue with `deep` pending
/// requests for the deep variant) and prints the lines.
pub fn run(jobs: u32, deep: u32) -> Result<()> {
    let (cluster, mut db) = setup::cluster()?;
    db.batch_execute(PLAIN_TABLE)?;
    db.batch_execute("CREATE DATABASE bench_deep")?;
    let url = cluster.url("postgres");
    let deep_url = format!("{}/bench_deep", url.strip_suffix("/postgres").unwrap_or(&url));
    let mut deep_db = postgres::Client::connect(&deep_url, postgres::NoTls)?;
    deep_db.batch_execute("CREATE EXTENSION pg_steadytext")?;
    let n = i32::try_from(jobs).unwrap_or(i32::MAX);
    let deep = i32::try_from(deep).unwrap_or(i32::MAX);

    // pending requests as the enqueue function writes them, inserted directly (faster)
    deep_db.execute(
        "INSERT INTO steadytext_queue (function_name, parameters, priority, max_retries)
         SELECT 'generate', jsonb_build_object('prompt', 'Deep queue prompt ' || i,
                'max_tokens', 16, 'use_cache', true, 'seed', 42), 0, 3
         FROM generate_series(1, $1) AS i",
        &[&deep],
    )?;
    deep_db.batch_execute("VACUUM ANALYZE steadytext_queue")?;

    // single statements, interleaved: the floor, the queue empty, the queue deep
    let enqueue = "SELECT steadytext_generate_async($1, 16)";
    let mut floor_db = cluster.connect();
    let secs = time_interleaved(
        &mut [(&mut floor_db, PLAIN_SINGLE), (&mut db, enqueue), (&mut deep_db, enqueue)],
        n,
    )?;
    let (floor_secs, empty_secs, deep_secs) = (secs[0], secs[1], secs[2]);
    println!("{}", single_line("enqueue_floor_single", n, floor_secs, 0).with_load());
    let line = single_line("enqueue_single_statements", n, empty_secs, 0).num(
        "ratio_to_floor",
        floor_secs / empty_secs,
        2,
    );
    println!("{}", line.with_load());
    let line = single_line("enqueue_single_statements_deep", n, deep_secs, i64::from(deep))
        .num("ratio_to_empty", empty_secs / deep_secs, 2)
        .num("ratio_to_floor", floor_secs / deep_secs, 2);
    println!("{}", line.with_load());

    // one statement of n rows: the floor, the per-row function, the batch function, alternated
    let per_row = "SELECT count(steadytext_generate_async('Enqueue bench prompt ' || i, 16))
                   FROM generate_series(1, $1) AS i";
    let batch = "SELECT cardinality(steadytext_generate_batch_async(
                     ARRAY(SELECT 'Enqueue bench prompt ' || i FROM generate_series(1, $1) AS i),
                     16))::bigint";
    let mut bulk = [(PLAIN_BULK, 0.0, 0i64), (per_row, 0.0, 0), (batch, 0.0, 0)];
    for _ in 0..BULK_REPEATS {
        for (sql, secs, made) in bulk.iter_mut() {
            let (s, m) = time_bulk(&mut db, sql, n)?;
            *secs += s;
            *made += m;
        }
    }
    let floor_bulk_secs = bulk[0].1;
    for (name, (_, secs, made)) in
        ["enqueue_floor_insert_select", "enqueue_insert_select", "enqueue_batch_function"]
            .into_iter()
            .zip(bulk)
    {
        let mut line = Line::new(name)
            .field("jobs", made)
            .field("statements", BULK_REPEATS)
            .num("seconds", secs, 3)
            .num("jobs_per_s", made as f64 / secs, 0);
        if name != "enqueue_floor_insert_select" {
            line = line.num("ratio_to_floor", floor_bulk_secs / secs, 2);
        }
        println!("{}", line.with_load());
    }
    Ok(())
}
