//! The worker's share of derivations' enqueueing: `steadytext_derivation_walk` turns up to
//! [`BATCH`] changes that statements recorded (`steadytext_derivation_changes`) into requests,
//! or else enqueues the next [`BATCH`] source rows of one walking derivation (the backfill of a
//! new derivation, the catch-up after a resume, everything again after a rederive), unless that
//! many of its requests are still pending, so a walk keeps the queue fed without flooding it.
//! Any number of workers share the work (each call locks the derivation it serves and skips
//! those others hold).
//!
//! When: at once after a call took changes or enqueued rows; [`DRAINING`] after a call found the
//! walking derivations' requests still pending; [`IDLE`] after a call found nothing to do, or at
//! once on `NOTIFY steadytext_jobs, 'walk'`, which a statement that recorded changes sends, as
//! do `steadytext_derive`, `_resume` and `_rederive`.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::error::DaemonError;

/// Changes taken or source rows enqueued per call at most (and the pending requests a walk
/// waits below).
pub const BATCH: i32 = 1000;

/// Pause while a walking derivation's requests drain.
pub const DRAINING: Duration = Duration::from_secs(1);

/// Pause when nothing is walking (a NOTIFY cuts it short).
pub const IDLE: Duration = Duration::from_secs(60);

/// Payload of the `steadytext_jobs` notification that starts a walk.
pub const WALK_PAYLOAD: &str = "walk";

/// When this worker walks next.
#[derive(Debug, Clone, Copy)]
pub struct Walk {
    next: Instant,
}

impl Default for Walk {
    /// The first call is due at once (a walk may have been left unfinished by a crash).
    fn default() -> Self {
        Self { next: Instant::now() }
    }
}

impl Walk {
    /// When the next call is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Makes the next call due at once.
    pub fn now(&mut self) {
        self.next = Instant::now();
    }

    /// Calls `steadytext_derivation_walk` with `statement` (`queue_sql::Statements::walk`) if a
    /// call is due; returns how many source rows it walked over (None: not due, or nothing is
    /// walking).
    pub async fn run_if_due(
        &mut self,
        client: &Client,
        statement: &tokio_postgres::Statement,
    ) -> Result<Option<i32>, DaemonError> {
        let now = Instant::now();
        if now < self.next {
            return Ok(None);
        }
        let walked: Option<i32> = client.query_one(statement, &[&BATCH]).await?.get(0);
        self.next = match walked {
            None => now + IDLE,
            Some(0) => now + DRAINING,
            Some(_) => now,
        };
        Ok(walked)
    }
}
