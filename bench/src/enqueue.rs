//! Figure 1: enqueue throughput of `steadytext_generate_async` next to PostgreSQL's own floor,
//! measured in the same run from the same client: an `INSERT` into a plain table of the queue's
//! shape (`LIKE steadytext_queue INCLUDING ALL`: same columns, defaults, constraints, indexes)
//! plus `pg_notify`. Single statements (autocommit, prepared) into an empty queue, into one
//! already holding `deep` pending requests, and the floor; then one `INSERT … SELECT` of `jobs`
//! rows both ways, and the same rows through one `steadytext_generate_batch_async` call. No
//! worker runs, so every job stays pending.

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

/// Times `n` autocommit executions of the prepared `sql` (one text argument); returns seconds.
fn time_single(db: &mut postgres::Client, sql: &str, n: i32) -> Result<f64> {
    let stmt = db.prepare(sql)?;
    let start = Instant::now();
    for i in 0..n {
        db.query_one(&stmt, &[&format!("Enqueue bench prompt {i}")])?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The line of one single-statement variant.
fn single_line(name: &str, n: i32, secs: f64, queued_before: i64) -> Line {
    Line::new(name)
        .field("jobs", n)
        .field("pending_before", queued_before)
        .field("clients", 1)
        .field("mode", "autocommit_prepared")
        .num("seconds", secs, 3)
        .num("jobs_per_s", f64::from(n) / secs, 0)
        .num("mean_ms", secs * 1000.0 / f64::from(n), 3)
}

/// Empties the queue and the plain table (a truncate, so no dead rows stay behind).
fn empty(db: &mut postgres::Client) -> Result<()> {
    db.batch_execute("TRUNCATE steadytext_queue, bench_plain")?;
    Ok(())
}

/// Enqueues `jobs` requests each way (and fills the queue with `deep` pending requests for the
/// deep variant) and prints the lines.
pub fn run(jobs: u32, deep: u32) -> Result<()> {
    let (_cluster, mut db) = setup::cluster()?;
    db.batch_execute(PLAIN_TABLE)?;
    let n = i32::try_from(jobs).unwrap_or(i32::MAX);
    let deep = i32::try_from(deep).unwrap_or(i32::MAX);

    // single statements: the floor, then the queue empty, then the queue deep
    let floor_secs = time_single(&mut db, PLAIN_SINGLE, n)?;
    println!("{}", single_line("enqueue_floor_single", n, floor_secs, 0).with_load());
    empty(&mut db)?;
    let enqueue = "SELECT steadytext_generate_async($1, 16)";
    let empty_secs = time_single(&mut db, enqueue, n)?;
    let line = single_line("enqueue_single_statements", n, empty_secs, 0).num(
        "ratio_to_floor",
        floor_secs / empty_secs,
        2,
    );
    println!("{}", line.with_load());
    empty(&mut db)?;
    // pending requests as the enqueue function writes them, inserted directly (faster)
    db.execute(
        "INSERT INTO steadytext_queue (function_name, parameters, priority, max_retries)
         SELECT 'generate', jsonb_build_object('prompt', 'Deep queue prompt ' || i,
                'max_tokens', 16, 'use_cache', true, 'seed', 42), 0, 3
         FROM generate_series(1, $1) AS i",
        &[&deep],
    )?;
    db.batch_execute("VACUUM ANALYZE steadytext_queue")?;
    let deep_secs = time_single(&mut db, enqueue, n)?;
    let line = single_line("enqueue_single_statements_deep", n, deep_secs, i64::from(deep))
        .num("ratio_to_empty", empty_secs / deep_secs, 2)
        .num("ratio_to_floor", floor_secs / deep_secs, 2);
    println!("{}", line.with_load());

    // one statement of n rows: the floor, then the enqueue function
    empty(&mut db)?;
    let start = Instant::now();
    let made: i64 = db.query_one(PLAIN_BULK, &[&n])?.get(0);
    let floor_bulk_secs = start.elapsed().as_secs_f64();
    let floor_bulk = Line::new("enqueue_floor_insert_select")
        .field("jobs", made)
        .field("statements", 1)
        .num("seconds", floor_bulk_secs, 3)
        .num("jobs_per_s", made as f64 / floor_bulk_secs, 0)
        .with_load();
    println!("{floor_bulk}");
    empty(&mut db)?;
    let start = Instant::now();
    let made: i64 = db
        .query_one(
            "SELECT count(steadytext_generate_async('Enqueue bench prompt ' || i, 16))
             FROM generate_series(1, $1) AS i",
            &[&n],
        )?
        .get(0);
    let secs = start.elapsed().as_secs_f64();
    let set = Line::new("enqueue_insert_select")
        .field("jobs", made)
        .field("statements", 1)
        .num("seconds", secs, 3)
        .num("jobs_per_s", made as f64 / secs, 0)
        .num("ratio_to_floor", floor_bulk_secs / secs, 2)
        .with_load();
    println!("{set}");
    empty(&mut db)?;
    let start = Instant::now();
    let made: i32 = db
        .query_one(
            "SELECT cardinality(steadytext_generate_batch_async(
                 ARRAY(SELECT 'Enqueue bench prompt ' || i FROM generate_series(1, $1) AS i), 16))",
            &[&n],
        )?
        .get(0);
    let secs = start.elapsed().as_secs_f64();
    let batch = Line::new("enqueue_batch_function")
        .field("jobs", made)
        .field("statements", 1)
        .num("seconds", secs, 3)
        .num("jobs_per_s", f64::from(made) / secs, 0)
        .num("ratio_to_floor", floor_bulk_secs / secs, 2)
        .with_load();
    println!("{batch}");
    Ok(())
}
