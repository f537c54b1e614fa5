//! Waiting for one request's `NOTIFY steadytext_completed` on a session that LISTENs to it.

use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use steadytext_api::notifications::{Completion, Outcome};

use crate::error::{BenchError, Result};

/// Waits (up to `deadline`) for the completion notification of `id` with status `completed`
/// and returns when it arrived; notifications of other requests are skipped.
pub fn wait_completed(db: &mut postgres::Client, id: &str, deadline: Duration) -> Result<Instant> {
    let start = Instant::now();
    loop {
        let left = deadline
            .checked_sub(start.elapsed())
            .ok_or_else(|| BenchError::Timeout(format!("no completion notification for {id}")))?;
        let mut notifications = db.notifications();
        let next = notifications.timeout_iter(left).next()?;
        match next {
            Some(n) => match Completion::parse(n.payload()) {
                Some(notice) if notice.request_id == id => {
                    if notice.status != Outcome::Completed {
                        return Err(BenchError::Process(format!("request ended: {}", n.payload())));
                    }
                    return Ok(Instant::now());
                }
                _ => {}
            },
            None => return Err(BenchError::Timeout(format!("no notification for {id}"))),
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
