//! A connection to PostgreSQL opened on first use and again after a failure, with statements
//! prepared on it: what the shared result cache and the dashboard each hold (the queue worker
//! keeps its own session, which LISTENs).

use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::DaemonError;

/// Statements prepared on a fresh connection.
pub trait Prepare: Sized + Send + Sync + 'static {
    /// Pins the session and prepares the statements on `client`.
    fn prepare(
        client: &Client,
    ) -> impl std::future::Future<Output = Result<Self, DaemonError>> + Send;
}

/// The lazily opened connection and its statements `T`.
pub struct Session<T> {
    config: Config,
    slot: Mutex<Option<(Arc<Client>, Arc<T>)>>,
}

impl<T: Prepare> Session<T> {
    /// A session on the database of `config`; nothing is opened yet.
    pub fn new(config: Config) -> Self {
        Self { config, slot: Mutex::new(None) }
    }

    /// The connection and its statements, opened when there is none or it closed.
    pub async fn get(&self) -> Result<(Arc<Client>, Arc<T>), DaemonError> {
        let mut slot = self.slot.lock().await;
        if let Some(open) = slot.as_ref().filter(|(c, _)| !c.is_closed()) {
            return Ok(open.clone());
        }
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let prepared = Arc::new(T::prepare(&client).await?);
        let open = (Arc::new(client), prepared);
        *slot = Some(open.clone());
        Ok(open)
    }

    /// Drops the connection (after a failure): the next [`Session::get`] opens a new one.
    pub async fn reset(&self) {
        *self.slot.lock().await = None;
    }
}
