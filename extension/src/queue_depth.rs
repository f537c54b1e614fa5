//! The queue-depth checks behind `steadytext.max_queue_size` and
//! `steadytext.max_queue_size_per_role`, at a cost that does not grow with the queue for almost
//! every enqueue.
//!
//! Counting the pending and processing rows (all of them, and the calling role's: one scan, run
//! as the queue's owner since row-level security hides other roles' rows from the caller) takes time proportional to the queue (and to its
//! dead rows after churn); counting on every enqueue made a deep queue slow to enqueue into
//! exactly when backpressure matters. So each session keeps the depth it last counted and adds
//! its own enqueues since, and counts again only when
//! * the count is older than [`RECOUNT_AFTER`] (one second), or
//! * the session enqueues as another role than at the count, or
//! * its own enqueues since the count, with those about to be added, would use more than
//!   1/[`ROOM_SHARE`] (an eighth) of the room that count left under either limit (the limit
//!   minus the counted depth) — so the closer the queue is to a limit, the more often it counts,
//!   and within eight requests of it on every enqueue —
//!
//! and always before refusing, so a refusal reports a fresh depth and stale counts never refuse.
//!
//! The bound this gives (stated in the GUC's description and the README), for each limit: a
//! session alone never takes the queue (or its role's share) beyond the limit (its own enqueues are always counted). Sessions enqueueing at
//! the same time see each other's requests only at their next count: each adds at most an eighth
//! of the room it counted before counting again, so N sessions that counted the same depth can
//! together go beyond the limit only when N > 8, and by at most (N − 8)/8 of that room. As with
//! any count, requests of transactions that have not committed yet are seen by nobody else.
//! Requests finished meanwhile (or rows rolled back) are still counted until the next count:
//! that errs on the side of refusing, which a refusal's fresh count then corrects.

use std::cell::Cell;
use std::time::{Duration, Instant};

use pgrx::prelude::*;

use crate::error::SqlError;
use crate::{enqueue_buffer, ext_schema, queue_owner};

/// How long a session trusts its last count of the queue.
pub const RECOUNT_AFTER: Duration = Duration::from_secs(1);

/// A session's own enqueues between two counts stay within 1/`ROOM_SHARE` of the room its last
/// count left.
pub const ROOM_SHARE: i64 = 8;

/// The limits an enqueue is admitted under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `steadytext.max_queue_size`.
    pub queue: i32,
    /// `steadytext.max_queue_size_per_role` (`None`: no limit of its own).
    pub per_role: Option<i32>,
}

/// A count of the queue and what this session enqueued since.
#[derive(Debug, Clone, Copy)]
struct Counted {
    /// Pending plus processing requests of every role, as counted.
    depth: i64,
    /// Those of `role`.
    own: i64,
    /// The role the count was made for.
    role: pg_sys::Oid,
    /// When it was counted.
    at: Instant,
    /// Requests this session enqueued since (including rolled-back ones: they err towards a
    /// recount).
    since: i64,
}

impl Counted {
    /// Whether `adding` more requests of `role` stay within this count's share of the room left
    /// under both limits, while the count is fresh.
    fn admits(&self, adding: i64, role: pg_sys::Oid, limits: Limits) -> bool {
        let within =
            |limit: i64, counted: i64| (self.since + adding) * ROOM_SHARE <= limit - counted;
        self.at.elapsed() < RECOUNT_AFTER
            && self.role == role
            && within(i64::from(limits.queue), self.depth)
            && limits.per_role.is_none_or(|limit| within(i64::from(limit), self.own))
    }
}

thread_local! {
    /// This backend's last count (PostgreSQL backends are single-threaded).
    static LAST: Cell<Option<Counted>> = const { Cell::new(None) };
}

/// Pending plus processing requests of every role and of `role`, counted now (the caller's own
/// uncommitted enqueues included).
fn count(role: pg_sys::Oid) -> Result<(i64, i64), SqlError> {
    enqueue_buffer::flush()?;
    let table = ext_schema::queue_table()?;
    let sql = format!(
        "SELECT count(*), count(*) FILTER (WHERE owner OPERATOR(pg_catalog.=) $1)
         FROM {} WHERE status OPERATOR(pg_catalog.=) ANY ('{{pending,processing}}'::text[])",
        ext_schema::qualified("steadytext_queue")?
    );
    queue_owner::run_as_owner(table, || {
        let (all, own) = Spi::get_two_with_args::<i64, i64>(&sql, &[role.into()])?;
        Ok((all.unwrap_or(0), own.unwrap_or(0)))
    })
}

/// Admits `adding` requests of the calling role under `limits` and counts them as this
/// session's, or refuses them with [`SqlError::QueueFull`] or [`SqlError::RoleQueueFull`] after
/// a fresh count.
pub fn admit(adding: usize, limits: Limits) -> Result<(), SqlError> {
    let adding_rows = adding as i64;
    let role = queue_owner::caller();
    if let Some(last) = LAST.get() {
        if last.admits(adding_rows, role, limits) {
            LAST.set(Some(Counted { since: last.since + adding_rows, ..last }));
            return Ok(());
        }
    }
    let (depth, own) = count(role)?;
    let queue_fits = depth + adding_rows <= i64::from(limits.queue);
    let role_fits = limits.per_role.is_none_or(|limit| own + adding_rows <= i64::from(limit));
    let fits = queue_fits && role_fits;
    let since = if fits { adding_rows } else { 0 };
    LAST.set(Some(Counted { depth, own, role, at: Instant::now(), since }));
    if !queue_fits {
        return Err(SqlError::QueueFull { depth, adding, limit: limits.queue });
    }
    if let (false, Some(limit)) = (role_fits, limits.per_role) {
        let role = queue_owner::role_name(role);
        return Err(SqlError::RoleQueueFull { role, depth: own, adding, limit });
    }
    Ok(())
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use std::time::{Duration, Instant};

    use pgrx::prelude::*;

    use super::{Counted, Limits};

    /// A fresh count admits enqueues up to an eighth of the room it left under either limit,
    /// then asks for a recount; an old count, or one made for another role, always does.
    #[pg_test]
    fn a_count_admits_an_eighth_of_its_room_while_fresh() {
        let role = pg_sys::Oid::from(10);
        let global = Limits { queue: 1000, per_role: None };
        let fresh = Counted { depth: 200, own: 0, role, at: Instant::now(), since: 0 };
        assert!(fresh.admits(100, role, global)); // room 800, share 100
        assert!(!fresh.admits(101, role, global));
        let used = Counted { since: 99, ..fresh };
        assert!(used.admits(1, role, global) && !used.admits(2, role, global));
        // within eight requests of the limit every enqueue counts again
        let near = Counted { depth: 993, ..fresh };
        assert!(!near.admits(1, role, global));
        let old = Counted { at: Instant::now() - Duration::from_secs(2), ..fresh };
        assert!(!old.admits(1, role, global));
        assert!(!fresh.admits(1, pg_sys::Oid::from(11), global));
        // the role's own share: room 80 under a limit of 100, share 10
        let shared = Limits { queue: 1000, per_role: Some(100) };
        let mine = Counted { own: 20, ..fresh };
        assert!(mine.admits(10, role, shared) && !mine.admits(11, role, shared));
    }
}
