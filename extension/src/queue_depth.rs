//! The queue-depth check behind `steadytext.max_queue_size`, counted once per statement.
//!
//! Counting the pending and processing rows costs time proportional to the queue's length, and
//! an `INSERT … SELECT steadytext_generate_async(…) FROM generate_series(1, n)` calls the
//! enqueue n times in one statement: counting on every call made that quadratic (10 000 rows
//! took 22 s). So the count is taken on a statement's first enqueue and then advanced by what
//! the statement itself enqueued; a new top-level statement counts again.
//!
//! Within one statement the cached depth never undercounts the rows that statement added. It
//! ignores what other sessions commit or workers finish meanwhile, as a single count at the
//! start of the statement would, and a subtransaction rolled back inside the statement (a
//! PL/pgSQL `EXCEPTION` block) leaves its rows counted until the statement ends: the limit can
//! only be reached early, never exceeded.

use std::cell::Cell;

use pgrx::prelude::*;

/// The statement a cached depth belongs to: the backend's local transaction id and the
/// statement's start time.
type StatementKey = (u32, i64);

thread_local! {
    /// The depth cached for one statement (PostgreSQL backends are single-threaded).
    static CACHED: Cell<Option<(StatementKey, i64)>> = const { Cell::new(None) };
}

/// The current top-level statement.
fn statement_key() -> StatementKey {
    // SAFETY: MyProc is set for every backend that runs SQL; both reads have no side effects.
    unsafe { ((*pg_sys::MyProc).lxid, pg_sys::GetCurrentStatementStartTimestamp()) }
}

/// Pending plus processing requests of every role, as this statement sees them.
pub fn depth() -> Result<i64, pgrx::spi::Error> {
    let key = statement_key();
    if let Some((cached_key, depth)) = CACHED.get() {
        if cached_key == key {
            return Ok(depth);
        }
    }
    let depth = Spi::get_one::<i64>("SELECT steadytext_queue_depth()")?.unwrap_or(0);
    CACHED.set(Some((key, depth)));
    Ok(depth)
}

/// Counts `n` requests this statement has just enqueued.
pub fn added(n: usize) {
    let key = statement_key();
    if let Some((cached_key, depth)) = CACHED.get() {
        if cached_key == key {
            CACHED.set(Some((key, depth + n as i64)));
        }
    }
}
