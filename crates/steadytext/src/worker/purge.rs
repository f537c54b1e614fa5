//! The worker's purge of finished requests (completed, failed, cancelled) older than
//! `steadytext.queue_retention` (its `--queue-retention`): [`BATCH`] rows per
//! `steadytext_queue_purge` call, each call its own short statement that skips rows others hold,
//! about every [`EVERY`] and back to back while calls come back full.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::error::DaemonError;

/// Finished requests deleted per statement.
pub const BATCH: i32 = 500;

/// Pause between purges once a call deleted fewer than [`BATCH`] rows.
pub const EVERY: Duration = Duration::from_secs(60);

/// When this worker purges next.
#[derive(Debug, Clone, Copy)]
pub struct Purge {
    next: Instant,
}

impl Default for Purge {
    /// The first purge is due at once.
    fn default() -> Self {
        Self { next: Instant::now() }
    }
}

impl Purge {
    /// When the next purge is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Deletes one batch of requests finished more than `retention` ago if a purge is due, with
    /// `statement` (`queue_sql::Statements::purge`, prepared) (never when `retention` is `None`);
    /// returns how many it deleted.
    pub async fn run_if_due(
        &mut self,
        client: &Client,
        statement: &tokio_postgres::Statement,
        retention: Option<Duration>,
    ) -> Result<i32, DaemonError> {
        let Some(retention) = retention else { return Ok(0) };
        if Instant::now() < self.next {
            return Ok(0);
        }
        let interval = format!("{} seconds", retention.as_secs());
        let purged: i32 = client.query_one(statement, &[&interval, &BATCH]).await?.get(0);
        self.next = if purged >= BATCH { Instant::now() } else { Instant::now() + EVERY };
        Ok(purged)
    }
}
