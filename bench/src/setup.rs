//! What every figure needs: where the binaries are, a cluster with the extension, daemons.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cluster::TestCluster;
use crate::daemon::{Daemon, Spawn};
use crate::error::{BenchError, Result};

/// Settings shared by all figures.
#[derive(Debug, Clone)]
pub struct Env {
    /// The `steadytext` binary (a release build).
    pub steadytext_bin: PathBuf,
    /// llama.cpp threads of a single daemon/worker (all cores unless `--threads` was given).
    pub threads: usize,
    /// Whether `--threads` was given: `serve` daemons then run with that fixed count, else with
    /// their default (adaptive up to all cores).
    pub fixed_threads: bool,
}

impl Env {
    /// The thread setting of `serve` daemons, as figure lines report it: the count, or
    /// `adaptiveN`.
    pub fn serve_threads(&self) -> String {
        if self.fixed_threads {
            self.threads.to_string()
        } else {
            format!("adaptive{}", self.threads)
        }
    }

    /// `steadytext serve --port 0` with `extra` flags, once it is ready (its worker listening
    /// too when `--database-url` is among them); the daemon's default threads unless
    /// `--threads` was given.
    pub fn serve(&self, extra: &[&str]) -> Result<Daemon> {
        let args = [&["--port", "0"], extra].concat();
        Ok(Daemon::start(&self.spawn("serve", &args, self.fixed_threads.then_some(self.threads)))?)
    }

    /// `steadytext worker` with `extra` flags and `threads` llama.cpp threads, once it listens.
    pub fn worker(&self, extra: &[&str], threads: usize) -> Result<Daemon> {
        Ok(Daemon::start(&self.spawn("worker", extra, Some(threads)))?)
    }

    fn spawn(&self, command: &str, args: &[&str], threads: Option<usize>) -> Spawn {
        let mut spec = Spawn::new(&self.steadytext_bin, command, args);
        spec.threads = threads;
        spec.echo_stderr = std::env::var_os("BENCH_VERBOSE").is_some();
        spec
    }
}

/// A throwaway cluster with `CREATE EXTENSION pg_steadytext` done and the queue limit raised
/// (`steadytext.max_queue_size` = 1000000) so that no figure hits it.
pub fn cluster() -> Result<(TestCluster, postgres::Client)> {
    cluster_with(&[])
}

/// [`cluster`] with extra server settings (`name=value`).
pub fn cluster_with(settings: &[&str]) -> Result<(TestCluster, postgres::Client)> {
    let cluster = TestCluster::start_with(settings);
    let mut db = cluster.connect();
    // ALTER SYSTEM refuses to run in a transaction block, so one statement per call
    for sql in [
        "CREATE EXTENSION pg_steadytext",
        "ALTER SYSTEM SET steadytext.max_queue_size = 1000000",
        "SELECT pg_reload_conf()",
    ] {
        db.batch_execute(sql)?;
    }
    let mut db = reconnect(&cluster, db)?;
    let limit: String = db.query_one("SHOW steadytext.max_queue_size", &[])?.get(0);
    if limit != "1000000" {
        return Err(BenchError::Process(format!(
            "steadytext.max_queue_size is {limit} after reload"
        )));
    }
    Ok((cluster, db))
}

/// Closes `old` and opens a fresh session (which sees reloaded settings at once).
pub fn reconnect(cluster: &TestCluster, old: postgres::Client) -> Result<postgres::Client> {
    drop(old);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut db = cluster.connect();
        let v: String = db.query_one("SHOW steadytext.max_queue_size", &[])?.get(0);
        if v == "1000000" || Instant::now() > deadline {
            return Ok(db);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls every 20 ms until no request is pending or processing; returns when that was seen.
pub fn wait_drained(db: &mut postgres::Client, deadline: Duration) -> Result<Instant> {
    let start = Instant::now();
    loop {
        let open: i64 = db
            .query_one(
                "SELECT count(*) FROM steadytext_queue WHERE status IN ('pending', 'processing')",
                &[],
            )?
            .get(0);
        if open == 0 {
            return Ok(Instant::now());
        }
        if start.elapsed() > deadline {
            return Err(BenchError::Timeout(format!(
                "{open} requests still open after {deadline:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Counts requests by final status: (completed, failed, cancelled).
pub fn outcome(db: &mut postgres::Client) -> Result<(i64, i64, i64)> {
    let r = db.query_one(
        "SELECT count(*) FILTER (WHERE status = 'completed'),
                count(*) FILTER (WHERE status = 'failed'),
                count(*) FILTER (WHERE status = 'cancelled')
         FROM steadytext_queue",
        &[],
    )?;
    Ok((r.get(0), r.get(1), r.get(2)))
}
