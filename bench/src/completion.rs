//! Waiting for one request's `NOTIFY steadytext_completed` on a session that LISTENs to it.

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use steadytext_api::notifications::{Completion, Outcome};

use crate::error::{BenchError, Result};

/// Waits (up to `deadline`) for the completion notification of `id` with status `completed`
/// and returns when it arrived; notifications of other requests are skipped.
pub fn wait_completed(db: &mut postgres::Client, id: &str, deadline: Duration) -> Result<Instant> {
    wait_completion(db, deadline, id, |_, notice| {
        if notice.request_id != id {
            return Ok(false);
        }
        if notice.status != Outcome::Completed {
            return Err(BenchError::Process(format!("request {id} ended: {:?}", notice.status)));
        }
        Ok(true)
    })
}

/// Waits (up to `deadline`) for the first completion notification that `accept` (given the
/// session, to look at what the completion wrote) takes, and returns when it arrived; `what`
/// names the wait in the timeout's error.
pub fn wait_completion(
    db: &mut postgres::Client,
    deadline: Duration,
    what: &str,
    mut accept: impl FnMut(&mut postgres::Client, &Completion) -> Result<bool>,
) -> Result<Instant> {
    let start = Instant::now();
    loop {
        let left = deadline
            .checked_sub(start.elapsed())
            .ok_or_else(|| BenchError::Timeout(format!("no completion notification for {what}")))?;
        let next = db.notifications().timeout_iter(left).next()?;
        let Some(n) = next else {
            return Err(BenchError::Timeout(format!("no notification for {what}")));
        };
        let arrived = Instant::now();
        if let Some(notice) = Completion::parse(n.payload()) {
            if accept(db, &notice)? {
                return Ok(arrived);
            }
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some` (up to `deadline`).
pub fn poll<T>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check()? {
            return Ok(v);
        }
        if start.elapsed() > deadline {
            return Err(BenchError::Timeout(format!("{what} after {deadline:?}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
