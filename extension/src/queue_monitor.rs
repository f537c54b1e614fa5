//! Monitoring of the queue and its workers.
#![allow(clippy::type_complexity)] // pgrx spells RETURNS TABLE(...) as a tuple type

use pgrx::prelude::*;

use crate::error::{or_raise, SqlError};
use crate::gucs;

/// Requests per status (every status, zero included) as the caller sees them: its own requests,
/// or all of them for steadytext_worker and superusers. `oldest_created_at` is the oldest request
/// in that status; `avg_seconds` the mean time from start to finish (completed) or from creation
/// to now (pending, processing).
#[pg_extern(volatile, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn steadytext_queue_stats() -> TableIterator<
    'static,
    (
        name!(status, Option<String>),
        name!(count, Option<i64>),
        name!(oldest_created_at, Option<TimestampWithTimeZone>),
        name!(avg_seconds, Option<f64>),
    ),
> {
    or_raise((|| {
        let rows = Spi::connect(|client| {
            client
                .select(
                    "SELECT s.status, count(q.id), min(q.created_at),
                            avg(extract(epoch FROM CASE
                                WHEN q.status = 'completed' THEN q.completed_at - q.started_at
                                WHEN q.status IN ('pending', 'processing') THEN now() - q.created_at
                                END))::float8
                     FROM unnest(ARRAY['pending', 'processing', 'completed', 'failed', 'cancelled'])
                          WITH ORDINALITY AS s(status, n)
                     LEFT JOIN steadytext_queue q ON q.status = s.status
                     GROUP BY s.status, s.n ORDER BY s.n",
                    None,
                    &[],
                )?
                .map(|r| -> Result<_, SqlError> {
                    Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(TableIterator::new(rows))
    })())
}

/// Registered queue workers: identity, last heartbeat, whether the heartbeat is older than
/// `steadytext.worker_timeout` (`stale`), and how many requests each is processing (among those
/// the caller may see).
#[pg_extern(volatile, requires = ["queue_transitions"])]
#[search_path(pg_catalog, @extschema@, pg_temp)]
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
        let rows = Spi::connect(|client| {
            client
                .select(
                    "SELECT w.worker_id, w.host, w.pid, w.status, w.started_at, w.last_heartbeat,
                            w.last_heartbeat < now() - make_interval(secs => $1),
                            (SELECT count(*) FROM steadytext_queue q
                             WHERE q.status = 'processing' AND q.worker_id = w.worker_id)
                     FROM steadytext_workers w ORDER BY w.worker_id",
                    None,
                    &[f64::from(gucs::worker_timeout_secs()).into()],
                )?
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
