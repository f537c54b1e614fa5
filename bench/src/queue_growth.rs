//! Figure 7: the queue's size on disk while requests cycle through it — enqueued, claimed,
//! completed and purged as workers do, with `steadytext.queue_retention` at 0 so that every
//! finished request is deleted at the next purge — sampled every `every` requests. With the
//! purge and the table's autovacuum settings the size should level off instead of growing with
//! the number of requests that passed through.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::report::Line;
use crate::setup;

/// Rows a worker purges per statement (as `steadytext worker` does).
const PURGE_BATCH: i32 = 500;

/// The size of the queue table and its indexes, in KiB, and its live and dead rows.
fn sizes(db: &mut postgres::Client) -> Result<(i64, i64, i64, i64)> {
    let r = db.query_one(
        "SELECT pg_relation_size('steadytext_queue') / 1024,
                pg_indexes_size('steadytext_queue') / 1024,
                coalesce(n_live_tup, 0), coalesce(n_dead_tup, 0)
         FROM pg_stat_user_tables WHERE relname = 'steadytext_queue'",
        &[],
    )?;
    Ok((r.get(0), r.get(1), r.get(2), r.get(3)))
}

/// Cycles `requests` requests through the queue in rounds of `batch` and prints the sizes every
/// `every` requests, then how the last sample compares with the first one of the run's second
/// half (flat: about 1; growing with the requests: about 2).
/// `naptime` is the cluster's `autovacuum_naptime` in seconds (PostgreSQL's default is 60):
/// dead rows are reclaimed no sooner than that. `rate` (requests per second, 0 for no limit)
/// paces the rounds, so that a run at the default naptime can span several vacuums.
pub fn run(requests: u32, batch: u32, every: u32, naptime: u32, rate: u32) -> Result<()> {
    let naptime_setting = format!("autovacuum_naptime={}", naptime.max(1));
    let (_cluster, mut db) = setup::cluster_with(&[&naptime_setting])?;
    let batch = i32::try_from(batch.max(1)).unwrap_or(i32::MAX);
    let every = u64::from(every.max(1));
    let enqueue = db.prepare(
        "SELECT count(steadytext_generate_async('Growth bench prompt ' || i, 16))
         FROM generate_series(1, $1) AS i",
    )?;
    // claim a round and complete it in one statement, as a worker completing requests that
    // finished together
    let claim_complete = db.prepare(
        "SELECT cardinality(array_positions(
                    steadytext_queue_complete_many('bench', array_agg(request_id),
                                                   array_agg('result ' || id)), true))
         FROM steadytext_queue_claim('bench', $1, '5 minutes')",
    )?;
    let purge = db.prepare("SELECT steadytext_queue_purge('0 seconds', $1)")?;
    let start = Instant::now();
    let (mut cycled, mut next_sample) = (0u64, every);
    // the total at the first sample in the run's second half, the largest and the last
    let mut half: Option<i64> = None;
    let (mut largest, mut last) = (0i64, 0i64);
    while cycled < u64::from(requests) {
        let round = batch.min(i32::try_from(u64::from(requests) - cycled).unwrap_or(batch));
        let made: i64 = db.query_one(&enqueue, &[&round])?.get(0);
        let completed: Option<i32> = db.query_one(&claim_complete, &[&round])?.get(0);
        if made != i64::from(round) || completed != Some(round) {
            return Err(crate::error::BenchError::Process(format!(
                "round of {round}: enqueued {made}, completed {completed:?}"
            )));
        }
        while db.query_one(&purge, &[&PURGE_BATCH])?.get::<_, i32>(0) == PURGE_BATCH {}
        cycled += round as u64;
        if rate > 0 {
            // the round's place in the schedule, not a sleep of fixed length
            let due = start + Duration::from_secs_f64(cycled as f64 / f64::from(rate));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        if cycled >= next_sample || cycled == u64::from(requests) {
            next_sample += every;
            let (table_kb, indexes_kb, live, dead) = sizes(&mut db)?;
            let total = table_kb + indexes_kb;
            if 2 * cycled >= u64::from(requests) {
                half.get_or_insert(total);
            }
            largest = largest.max(total);
            last = total;
            let line = Line::new("queue_growth")
                .field("cycled", cycled)
                .field("table_kb", table_kb)
                .field("indexes_kb", indexes_kb)
                .field("total_kb", total)
                .field("live_rows", live)
                .field("dead_rows", dead)
                .num("elapsed_s", start.elapsed().as_secs_f64(), 1)
                .with_load();
            println!("{line}");
        }
    }
    let half = half.unwrap_or(last);
    let summary = Line::new("queue_growth_summary")
        .field("cycled", cycled)
        .field("batch", batch)
        .field("autovacuum_naptime_s", naptime.max(1))
        .field("paced_rate", rate)
        .field("half_total_kb", half)
        .field("last_total_kb", last)
        .field("largest_total_kb", largest)
        .num("last_over_half", last as f64 / half.max(1) as f64, 2)
        .num("requests_per_s", cycled as f64 / start.elapsed().as_secs_f64(), 0)
        .with_load();
    println!("{summary}");
    Ok(())
}
