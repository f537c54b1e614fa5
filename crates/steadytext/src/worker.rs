//! The queue worker: LISTENs on `steadytext_jobs`, claims batches through the extension's
//! transition functions, runs them on the engine (batched), heartbeats its leases, completes or
//! fails each job, reconnects with backoff when PostgreSQL goes away, and on shutdown stops
//! claiming, finishes its batch, and marks itself stopped.
//!
//! No transaction is ever held open during inference: every SQL call is its own statement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::cli::WorkerTuning;
use crate::error::DaemonError;
use crate::job::{self, Job};
use crate::service::Service;
use crate::worker_settings::{self, Settings};

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Everything a worker needs.
pub struct Worker {
    /// Connection settings.
    pub db: Config,
    /// Flag/env settings (GUCs fill the gaps each cycle).
    pub tuning: WorkerTuning,
    /// The engine and cache.
    pub service: Service,
    /// Id in steadytext_workers.
    pub worker_id: String,
    /// Becomes true when the process should stop.
    pub shutdown: watch::Receiver<bool>,
}

/// This host's name (for steadytext_workers.host).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl Worker {
    /// Runs until shutdown, reconnecting with exponential backoff after connection loss.
    pub async fn run(mut self) -> Result<(), DaemonError> {
        let mut backoff = Duration::from_millis(250);
        loop {
            if *self.shutdown.borrow() {
                return Ok(());
            }
            let started = Instant::now();
            match self.session().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    eprintln!(
                        "steadytext worker {}: {e}; reconnecting in {backoff:?}",
                        self.worker_id
                    );
                }
            }
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_millis(250); // it ran fine for a while: start over
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.changed() => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection's life: LISTEN, then claim/process until shutdown or an error.
    async fn session(&mut self) -> Result<(), DaemonError> {
        let (client, mut connection) = self.db.connect(NoTls).await?;
        let wake = Arc::new(Notify::new());
        let (closed_tx, mut closed) = watch::channel(false);
        let notify = wake.clone();
        // the connection task: drives the socket and turns notifications into wake-ups
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(msg) = messages.next().await {
                match msg {
                    Ok(AsyncMessage::Notification(_)) => notify.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("steadytext worker: connection error: {e}");
                        break;
                    }
                }
            }
            let _ = closed_tx.send(true);
        });
        let result = self.serve_queue(&client, &wake, &mut closed).await;
        drop(client);
        driver.abort();
        result
    }

    async fn serve_queue(
        &mut self,
        client: &Client,
        wake: &Notify,
        closed: &mut watch::Receiver<bool>,
    ) -> Result<(), DaemonError> {
        client.batch_execute("LISTEN steadytext_jobs").await?;
        self.release_orphans(client).await?;
        let host = host_name();
        let pid = std::process::id() as i32;
        let lease = Duration::from_secs(u64::from(self.tuning.lease));
        self.heartbeat(client, &host, pid, "running").await?;
        eprintln!("steadytext worker {}: listening on steadytext_jobs", self.worker_id);
        let mut last_beat = Instant::now();
        let mut last_rescue: Option<Instant> = None;
        loop {
            if *self.shutdown.borrow() {
                self.heartbeat(client, &host, pid, "stopped").await?;
                return Ok(());
            }
            let settings = worker_settings::resolve(client, &self.tuning).await?;
            if last_rescue.is_none_or(|t| t.elapsed() >= lease / 2) {
                client.query_one("SELECT steadytext_queue_rescue_expired()", &[]).await?;
                last_rescue = Some(Instant::now());
            }
            if last_beat.elapsed() >= lease / 3 {
                self.heartbeat(client, &host, pid, "running").await?;
                last_beat = Instant::now();
            }
            let jobs = self.claim(client, settings.concurrency, lease).await?;
            if jobs.is_empty() {
                let idle = settings.poll_interval.min(lease / 3);
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                    _ = self.shutdown.changed() => {}
                    _ = closed.changed() => return Err(lost()),
                }
                continue;
            }
            self.process(client, &host, pid, jobs, settings, lease).await?;
            last_beat = Instant::now();
        }
    }

    /// Gives back the requests a previous session of this worker id still holds (its
    /// connection broke mid-batch, or the process restarted): nothing runs them any more, and
    /// this session's heartbeats would otherwise keep renewing their leases. Each counts as a
    /// failed attempt (retried at once while retries are left).
    async fn release_orphans(&self, client: &Client) -> Result<(), DaemonError> {
        let released = client
            .query(
                "SELECT steadytext_queue_fail(request_id, $1,
                        'worker ' || $1 || ' lost the attempt (connection or process restart)',
                        true, interval '0')
                 FROM steadytext_queue WHERE status = 'processing' AND worker_id = $1",
                &[&self.worker_id],
            )
            .await?;
        if !released.is_empty() {
            eprintln!(
                "steadytext worker {}: released {} request(s) of an earlier session",
                self.worker_id,
                released.len()
            );
        }
        Ok(())
    }

    async fn heartbeat(
        &self,
        client: &Client,
        host: &str,
        pid: i32,
        status: &str,
    ) -> Result<(), DaemonError> {
        let lease = format!("{} seconds", self.tuning.lease);
        client
            .query_one(
                "SELECT steadytext_worker_heartbeat($1, $2, $3, $4::text::interval, $5)",
                &[&self.worker_id, &host, &pid, &lease, &status],
            )
            .await?;
        Ok(())
    }

    async fn claim(
        &self,
        client: &Client,
        batch: u32,
        lease: Duration,
    ) -> Result<Vec<Job>, DaemonError> {
        let rows = client
            .query(
                "SELECT request_id::text, function_name, parameters::text, retry_count, \
                        max_retries, priority \
                 FROM steadytext_queue_claim($1, $2, $3::text::interval)",
                &[&self.worker_id, &(batch as i32), &format!("{} seconds", lease.as_secs())],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let parameters: String = r.get(2);
                Ok(Job {
                    request_id: r.get(0),
                    function: r.get(1),
                    parameters: serde_json::from_str(&parameters).map_err(|e| {
                        DaemonError::BadJob { function: r.get(1), reason: e.to_string() }
                    })?,
                    retry_count: r.get(3),
                    max_retries: r.get(4),
                    priority: r.get(5),
                })
            })
            .collect()
    }

    /// Runs a claimed batch concurrently (the engine batches the calls), heartbeating while it
    /// runs, then records each outcome.
    async fn process(
        &mut self,
        client: &Client,
        host: &str,
        pid: i32,
        jobs: Vec<Job>,
        settings: Settings,
        lease: Duration,
    ) -> Result<(), DaemonError> {
        let service = self.service.clone();
        let runs = jobs.iter().map(|j| {
            let service = service.clone();
            async move {
                let started = Instant::now();
                let outcome = tokio::time::timeout(
                    settings.timeout,
                    job::run(&service, &j.function, &j.parameters, j.priority),
                )
                .await
                .unwrap_or(Err(DaemonError::Timeout(settings.timeout.as_secs())));
                (outcome, started.elapsed())
            }
        });
        let mut all = Box::pin(join_all(runs));
        let mut beat = tokio::time::interval(lease / 3);
        beat.tick().await; // the first tick is immediate
        let outcomes = loop {
            tokio::select! {
                outcomes = &mut all => break outcomes,
                _ = beat.tick() => self.heartbeat(client, host, pid, "running").await?,
            }
        };
        for (job, (outcome, elapsed)) in jobs.iter().zip(outcomes) {
            self.record(client, job, outcome, elapsed, &settings).await?;
        }
        Ok(())
    }

    async fn record(
        &self,
        client: &Client,
        job: &Job,
        outcome: Result<String, DaemonError>,
        elapsed: Duration,
        settings: &Settings,
    ) -> Result<(), DaemonError> {
        let metrics = &self.service.metrics;
        match outcome {
            Ok(result) => {
                let row = client
                    .query_one(
                        "SELECT steadytext_queue_complete($1::text::uuid, $2, $3)",
                        &[&job.request_id, &self.worker_id, &result],
                    )
                    .await?;
                let written: bool = row.get(0);
                // not written: cancelled meanwhile, or the lease was lost to another worker
                metrics.record_job(
                    &job.function,
                    if written { "completed" } else { "dropped" },
                    elapsed,
                );
            }
            Err(e) => {
                let retries_left = job.retry_count < settings.max_retries as i32
                    && job.retry_count < job.max_retries;
                let retryable =
                    (e.retryable() || matches!(e, DaemonError::Timeout(_))) && retries_left;
                let row = client
                    .query_one(
                        "SELECT steadytext_queue_fail($1::text::uuid, $2, $3, $4)",
                        &[&job.request_id, &self.worker_id, &e.to_string(), &retryable],
                    )
                    .await?;
                let status: Option<String> = row.get(0);
                let outcome = match status.as_deref() {
                    Some("pending") => "retried",
                    Some(_) => "failed",
                    None => "dropped",
                };
                metrics.record_job(&job.function, outcome, elapsed);
            }
        }
        Ok(())
    }
}

fn lost() -> DaemonError {
    DaemonError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection to PostgreSQL lost",
    ))
}
