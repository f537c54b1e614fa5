//! The result cache every worker shares, in PostgreSQL (`steadytext_result_cache`, through the
//! extension's `steadytext_result_cache_get`/`_put`/`_evict`): the tier behind each daemon's
//! local [`crate::cache::ResultCache`], so a result computed by any worker, on any machine or
//! before a restart, is reused by all. It has its own connection (not the queue worker's
//! session), opened on first use and again after a failure. It is best effort: when PostgreSQL
//! cannot answer, a lookup is a miss and a store is skipped (with a warning), and the request is
//! computed as without it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_postgres::{Client, Config};

use crate::db_session::{Prepare, Session};
use crate::error::DaemonError;
use crate::queue_sql::Statements;

/// How often an eviction runs, across all daemons sharing the cache: each daemon asks this
/// often whether one is due, and one of them gets to run it
/// (`steadytext_result_cache_evict_due`).
const EVICT_EVERY: Duration = Duration::from_secs(60);

/// Entries deleted per eviction statement (short statements, never a long lock).
const EVICT_BATCH: i32 = 1000;

/// The PostgreSQL tier of the result cache.
pub struct SharedCache {
    session: Session<Statements>,
}

impl Prepare for Statements {
    async fn prepare(client: &Client) -> Result<Self, DaemonError> {
        Statements::for_session(client).await
    }
}

impl SharedCache {
    /// A shared cache on the database of `config`; it connects on first use and, while it
    /// lives, asks every minute whether an eviction is due, running it when it is (the task ends
    /// when the cache is dropped).
    pub fn start(config: Config) -> Arc<Self> {
        let cache = Arc::new(Self { session: Session::new(config) });
        tokio::spawn(evict_while_alive(Arc::downgrade(&cache)));
        cache
    }

    /// The results cached under `keys` (absent keys are misses); empty when PostgreSQL fails.
    pub async fn get(&self, keys: &[String]) -> HashMap<String, String> {
        let query = async {
            let (client, sql) = self.client().await?;
            let rows = client.query(&sql.cache_get, &[&keys]).await?;
            Ok::<_, DaemonError>(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        };
        self.or_warn("read", query).await.unwrap_or_default()
    }

    /// Stores `entries` (key, result); a key already present keeps its result.
    pub async fn put(&self, entries: &[(String, String)]) {
        if entries.is_empty() {
            return;
        }
        let (keys, results): (Vec<&str>, Vec<&str>) =
            entries.iter().map(|(k, v)| (k.as_str(), v.as_str())).unzip();
        let query = async {
            let (client, sql) = self.client().await?;
            client.query_one(&sql.cache_put, &[&keys, &results]).await?;
            Ok::<_, DaemonError>(())
        };
        self.or_warn("write", query).await;
    }

    /// Runs an eviction if none has started, on any daemon, within [`EVICT_EVERY`]: deletes
    /// what lies beyond the configured bounds, a batch per statement, and returns how many
    /// entries it removed (`None` when it was not this daemon's turn).
    pub async fn evict_if_due(&self) -> Result<Option<u64>, DaemonError> {
        let (client, sql) = self.client().await?;
        let every = format!("{} seconds", EVICT_EVERY.as_secs());
        let due: bool = client.query_one(&sql.cache_evict_due, &[&every]).await?.get(0);
        if !due {
            return Ok(None);
        }
        let mut removed = 0;
        loop {
            let row = client.query_one(&sql.cache_evict, &[&EVICT_BATCH]).await?;
            let n: i32 = row.get(0);
            removed += n as u64;
            if n < EVICT_BATCH {
                return Ok(Some(removed));
            }
        }
    }

    /// The connection and its statements, opened when there is none.
    async fn client(&self) -> Result<(Arc<Client>, Arc<Statements>), DaemonError> {
        self.session.get().await
    }

    /// The result of `query`, or `None` after a warning (and a fresh connection next time).
    async fn or_warn<T>(
        &self,
        what: &str,
        query: impl std::future::Future<Output = Result<T, DaemonError>>,
    ) -> Option<T> {
        match query.await {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("steadytext: warning: shared result cache {what} failed: {e}");
                self.session.reset().await;
                None
            }
        }
    }
}

/// Asks every [`EVICT_EVERY`] whether an eviction is due, and runs it when it is, until the cache
/// is dropped.
async fn evict_while_alive(cache: Weak<SharedCache>) {
    let mut tick = tokio::time::interval(EVICT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cache) = cache.upgrade() else { return };
        if let Err(e) = cache.evict_if_due().await {
            eprintln!("steadytext: warning: shared result cache eviction failed: {e}");
            cache.session.reset().await;
        }
    }
}
