//! The queue-depth check behind `steadytext.max_queue_size`, at a cost that does not grow with
//! the queue for almost every enqueue.
//!
//! Counting the pending and processing rows takes time proportional to the queue (and to its
//! dead rows after churn); counting on every enqueue made a deep queue slow to enqueue into
//! exactly when backpressure matters. So each session keeps the depth it last counted and adds
//! its own enqueues since, and counts again only when
//! * the count is older than [`RECOUNT_AFTER`] (one second), or
//! * its own enqueues since the count, with those about to be added, would use more than
//!   1/[`ROOM_SHARE`] (an eighth) of the room that count left (`max_queue_size` minus the
//!   counted depth) — so the closer the queue is to the limit, the more often it counts, and
//!   within eight requests of it on every enqueue —
//!
//! and always before refusing, so a refusal reports a fresh depth and stale counts never refuse.
//!
//! The bound this gives (stated in the GUC's description and the README): a session alone never
//! takes the queue beyond the limit (its own enqueues are always counted). Sessions enqueueing at
//! the same time see each other's requests only at their next count: each adds at most an eighth
//! of the room it counted before counting again, so N sessions that counted the same depth can
//! together go beyond the limit only when N > 8, and by at most (N − 8)/8 of that room. As with
//! any count, requests of transactions that have not committed yet are seen by nobody else.
//! Requests finished meanwhile (or rows rolled back) are still counted until the next count:
//! that errs on the side of refusing, which a refusal's fresh count then corrects.

use std::cell::Cell;
use std::time::{Duration, Instant};

use pgrx::prelude::*;

use crate::enqueue_buffer;
use crate::error::SqlError;

/// How long a session trusts its last count of the queue.
pub const RECOUNT_AFTER: Duration = Duration::from_secs(1);

/// A session's own enqueues between two counts stay within 1/`ROOM_SHARE` of the room its last
/// count left.
pub const ROOM_SHARE: i64 = 8;

/// A count of the queue and what this session enqueued since.
#[derive(Debug, Clone, Copy)]
struct Counted {
    /// Pending plus processing requests of every role, as counted.
    depth: i64,
    /// When it was counted.
    at: Instant,
    /// Requests this session enqueued since (including rolled-back ones: they err towards a
    /// recount).
    since: i64,
}

impl Counted {
    /// Whether `adding` more requests stay within this count's share of the room left under
    /// `limit`, while the count is fresh.
    fn admits(&self, adding: i64, limit: i64) -> bool {
        self.at.elapsed() < RECOUNT_AFTER
            && (self.since + adding) * ROOM_SHARE <= limit - self.depth
    }
}

thread_local! {
    /// This backend's last count (PostgreSQL backends are single-threaded).
    static LAST: Cell<Option<Counted>> = const { Cell::new(None) };
}

/// Pending plus processing requests of every role, counted now (the caller's own uncommitted
/// enqueues included).
fn count() -> Result<i64, SqlError> {
    enqueue_buffer::flush()?;
    Ok(Spi::get_one::<i64>("SELECT steadytext_queue_depth()")?.unwrap_or(0))
}

/// Admits `adding` requests under `limit` (`steadytext.max_queue_size`) and counts them as this
/// session's, or refuses them with [`SqlError::QueueFull`] after a fresh count.
pub fn admit(adding: usize, limit: i32) -> Result<(), SqlError> {
    let (adding_rows, limit) = (adding as i64, i64::from(limit));
    if let Some(last) = LAST.get() {
        if last.admits(adding_rows, limit) {
            LAST.set(Some(Counted { since: last.since + adding_rows, ..last }));
            return Ok(());
        }
    }
    let depth = count()?;
    let fits = depth + adding_rows <= limit;
    let since = if fits { adding_rows } else { 0 };
    LAST.set(Some(Counted { depth, at: Instant::now(), since }));
    if fits {
        Ok(())
    } else {
        Err(SqlError::QueueFull { depth, adding, limit: limit as i32 })
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use std::time::{Duration, Instant};

    use pgrx::prelude::*;

    use super::Counted;

    /// A fresh count admits enqueues up to an eighth of the room it left, then asks for a
    /// recount; an old count always does.
    #[pg_test]
    fn a_count_admits_an_eighth_of_its_room_while_fresh() {
        let fresh = Counted { depth: 200, at: Instant::now(), since: 0 };
        assert!(fresh.admits(100, 1000)); // room 800, share 100
        assert!(!fresh.admits(101, 1000));
        let used = Counted { since: 99, ..fresh };
        assert!(used.admits(1, 1000) && !used.admits(2, 1000));
        // within eight requests of the limit every enqueue counts again
        let near = Counted { depth: 993, at: Instant::now(), since: 0 };
        assert!(!near.admits(1, 1000));
        let old = Counted { at: Instant::now() - Duration::from_secs(2), ..fresh };
        assert!(!old.admits(1, 1000));
    }
}
