//! Monitoring of the queue and its workers.
#![allow(clippy::type_complexity)] // pgrx spells RETURNS TABLE(...) as a tuple type

use pgrx::prelude::*;

use crate::error::{or_raise, SqlError};
use crate::gucs;
use crate::{enqueue_buffer, ext_schema};

/// Requests by function and status as the caller sees them (its own requests, or all of them
/// for steadytext_worker and superusers), one row per combination present: how many, the
/// oldest one's creation time and age, and the mean and 95th percentile of their durations —
/// start to finish for completed and failed requests, creation to now for pending and
/// processing ones (their age), none for cancelled ones.
#[pg_extern(volatile, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_queue_stats() -> TableIterator<
    'static,
    (
        name!(function_name, Option<String>),
        name!(status, Option<String>),
        name!(count, Option<i64>),
        name!(oldest_created_at, Option<TimestampWithTimeZone>),
        name!(oldest_age_seconds, Option<f64>),
        name!(avg_seconds, Option<f64>),
        name!(p95_seconds, Option<f64>),
    ),
> {
    or_raise((|| {
        enqueue_buffer::flush()?;
        let sql = format!(
                    "SELECT function_name, status, count(*), min(created_at),
                            extract(epoch FROM now() - min(created_at))::float8,
                            avg(seconds)::float8,
                            percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds)::float8
                     FROM (SELECT function_name, status, created_at,
                                  extract(epoch FROM CASE
                                      WHEN status = 'completed' THEN completed_at - started_at
                                      WHEN status = 'failed' THEN failed_at - started_at
                                      WHEN status IN ('pending', 'processing') THEN now() - created_at
                                  END) AS seconds
                           FROM {}) q
                     GROUP BY function_name, status
                     ORDER BY function_name, array_position(
                         ARRAY['pending', 'processing', 'completed', 'failed', 'cancelled'], status)",
            ext_schema::qualified("steadytext_queue")?
        );
        let rows = Spi::connect(|client| {
            client
                .select(&sql, None, &[])?
                .map(|r| -> Result<_, SqlError> {
                    Ok((
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(TableIterator::new(rows))
    })())
}

/// Registered queue workers (for steadytext_worker and pg_monitor members and superusers; other
/// roles get SQLSTATE 42501): identity, last heartbeat, whether the heartbeat is older than
/// `steadytext.worker_timeout` (`stale`), and how many requests each is processing (among those
/// the caller may see).
#[pg_extern(volatile, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_worker_status() -> TableIterator<
    'static,
    (
        name!(worker_id, Option<String>),
        name!(host, Option<String>),
        name!(pid, Option<i32>),
        name!(status, Option<String>),
        name!(started_at, Option<TimestampWithTimeZone>),
        name!(last_heartbeat, Option<TimestampWithTimeZone>),
        name!(stale, Option<bool>),
        name!(processing, Option<i64>),
    ),
> {
    or_raise((|| {
        let workers = ext_schema::qualified("steadytext_workers")?;
        let may_see = Spi::get_one_with_args::<bool>(
            "SELECT has_table_privilege($1, 'SELECT')",
            &[workers.clone().into()],
        )?;
        if may_see != Some(true) {
            return Err(SqlError::WorkersHidden);
        }
        let sql = format!(
            "SELECT w.worker_id, w.host, w.pid, w.status, w.started_at, w.last_heartbeat,
                    w.last_heartbeat < now() - make_interval(secs => $1),
                    (SELECT count(*) FROM {} q
                     WHERE q.status = 'processing' AND q.worker_id = w.worker_id)
             FROM {workers} w ORDER BY w.worker_id",
            ext_schema::qualified("steadytext_queue")?
        );
        let rows = Spi::connect(|client| {
            client
                .select(&sql, None, &[f64::from(gucs::worker_timeout_secs()).into()])?
                .map(|r| -> Result<_, SqlError> {
                    Ok((
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(TableIterator::new(rows))
    })())
}
