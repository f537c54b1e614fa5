//! The daemon's one readiness signal: `--ready-file`. Once every listener is bound and, when a
//! worker runs, the worker listens for requests, the daemon writes where it can be reached to
//! that file (whole, through a rename); scripts, tests and benchmarks wait for the file instead
//! of parsing log lines. The file is removed when the daemon exits.

use std::path::{Path, PathBuf};

pub use steadytext_api::ready::Ready;
use tokio::sync::oneshot;

use crate::error::DaemonError;

/// Removes the ready file when dropped (at exit).
pub struct ReadyFile(Option<PathBuf>);

impl ReadyFile {
    /// The signal for `path` (`None`: no file asked for). A stale file from an earlier run is
    /// removed at once, so a waiter never mistakes it for this run's.
    pub fn new(path: Option<PathBuf>) -> Result<Self, DaemonError> {
        if let Some(p) = &path {
            match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(Self(path))
    }

    /// Writes `ready` once `worker_listening` fires (at once when no worker runs). Runs as a
    /// task; a worker that never listens leaves the file unwritten, so waiters time out.
    pub async fn announce(
        &self,
        ready: Ready,
        worker_listening: Option<oneshot::Receiver<()>>,
    ) -> Result<(), DaemonError> {
        let Some(path) = &self.0 else { return Ok(()) };
        if let Some(listening) = worker_listening {
            if listening.await.is_err() {
                return Ok(()); // the worker stopped before it listened
            }
        }
        write(path, &ready)?;
        Ok(())
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Writes `ready` as one JSON line beside `path`, then renames it into place.
fn write(path: &Path, ready: &Ready) -> Result<(), DaemonError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let text = serde_json::to_string(ready).expect("ready serialises") + "\n";
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_appears_whole_after_the_worker_listens_and_goes_at_exit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        std::fs::write(&path, "stale").unwrap();
        let signal = ReadyFile::new(Some(path.clone())).unwrap();
        assert!(!path.exists(), "a stale file is removed at start");
        let (listening, rx) = oneshot::channel();
        let ready = Ready {
            url: Some("http://127.0.0.1:1".into()),
            socket: None,
            worker: Some("w".into()),
            pid: 7,
        };
        {
            let announce = signal.announce(ready, Some(rx));
            tokio::pin!(announce);
            tokio::select! {
                _ = &mut announce => panic!("announced before the worker listened"),
                _ = tokio::task::yield_now() => {}
            }
            assert!(!path.exists());
            listening.send(()).unwrap();
            announce.await.unwrap();
        }
        let read: Ready = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(read.url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(read.worker.as_deref(), Some("w"));
        drop(signal);
        assert!(!path.exists(), "removed at exit");
    }
}
