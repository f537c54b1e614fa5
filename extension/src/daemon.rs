//! Calls to the steadytext daemon from a backend: the blocking HTTP exchange runs on a helper
//! thread (which never touches PostgreSQL) while the backend waits, servicing query cancel and
//! statement_timeout, so a slow or dead daemon never hangs a session.

use std::sync::mpsc;
use std::time::Duration;

use steadytext_api::client::{Client, ClientError};

use crate::error::SqlError;
use crate::gucs;

/// Longest pause between two interrupt checks while waiting for the daemon.
const MAX_WAIT_STEP: Duration = Duration::from_millis(50);

/// Runs `call` against the daemon configured by `steadytext.daemon_url` and returns its result,
/// raising on query cancel or statement_timeout while waiting.
pub fn call<T, F>(call: F) -> Result<T, SqlError>
where
    T: Send + 'static,
    F: FnOnce(&Client) -> Result<T, ClientError> + Send + 'static,
{
    let client = Client::new(&gucs::daemon_url(), gucs::daemon_connect_timeout())?
        .with_token(gucs::daemon_token());
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("steadytext-call".into())
        .spawn(move || {
            // if the backend stopped waiting, nobody receives this: fine
            let _ = tx.send(call(&client));
        })
        .map_err(|e| ClientError::Unreachable {
            url: gucs::daemon_url(),
            reason: format!("cannot start the request thread: {e}"),
        })?;
    let mut step = Duration::from_millis(1);
    loop {
        match rx.recv_timeout(step) {
            Ok(result) => return Ok(result?),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                pgrx::check_for_interrupts!();
                step = (step * 2).min(MAX_WAIT_STEP);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(SqlError::Daemon(ClientError::Protocol {
                    url: gucs::daemon_url(),
                    reason: "the request thread ended without a reply".into(),
                }))
            }
        }
    }
}
