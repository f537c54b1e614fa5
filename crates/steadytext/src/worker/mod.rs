//! The queue worker: a pool of `concurrency` slots. It LISTENs on `steadytext_jobs`, claims
//! through the extension's transition functions whenever a slot is free (woken by NOTIFY, a
//! finished request, or its poll: `poll_interval` while a pending request waits to become due,
//! else [`IDLE_POLL`]), runs each claimed request as its own task on the
//! engine (which decodes them together), completes or fails each one the moment it finishes,
//! heartbeats its leases on its own timer, and stops the engine work of a request cancelled
//! while it runs (it LISTENs on `steadytext_completed` for status `cancelled`, and then reads the
//! request's row: any role may send a notification, so one proves nothing), and deletes
//! finished requests older than `steadytext.queue_retention` in small batches (`purge.rs`). It
//! reconnects with backoff when PostgreSQL goes away (what the broken session held is released
//! by the next one), and on shutdown stops claiming, finishes what runs, and marks itself
//! stopped.
//!
//! No transaction is ever held open during inference: every SQL call is its own statement. The
//! statements are in `queue_sql.rs`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use steadytext_api::notifications::{
    Announcement, Completion, Outcome, COMPLETED_CHANNEL, JOBS_CHANNEL,
};
use steadytext_api::queue_request::QueuedRequest;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::{AbortHandle, JoinError, JoinSet};
use tokio::time::MissedTickBehavior;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

pub mod db_config;
pub mod derivation_walk;
pub mod job;
pub mod purge;
pub mod settings;
pub mod wake;

use job::Job;
use settings::Settings;

use crate::cli::WorkerTuning;
use crate::engine_host::GATHER_WINDOW;
use crate::error::DaemonError;
use crate::queue_sql::Statements;
use crate::service::Service;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Longest an idle worker waits before it polls the queue again (its claims come back empty and
/// nothing pending is waiting to become due): new requests announce themselves with `NOTIFY
/// steadytext_jobs`, so this poll is a safety net, not the way work arrives.
pub const IDLE_POLL: Duration = Duration::from_secs(60);

/// How often the settings (GUCs, and the live workers) are read again when no new work was
/// announced; they are read before the first claim after every announcement (`wake.rs`), so
/// `ALTER SYSTEM` reaches a worker with its next request.
pub const SETTINGS_REFRESH: Duration = Duration::from_secs(30);

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
    /// Told once, when the first session listens for requests.
    pub ready: Option<oneshot::Sender<()>>,
    /// Most generations the engine decodes together (`--max-batch`): the concurrency when it
    /// is set to 0, its default.
    pub max_batch: u32,
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
        let (announce_tx, mut announcements) = mpsc::unbounded_channel();
        let walk_wake = Arc::new(Notify::new());
        let (cancel_tx, mut cancels) = mpsc::unbounded_channel();
        let (closed_tx, mut closed) = watch::channel(false);
        let notify_walk = walk_wake.clone();
        // the connection task: drives the socket and turns notifications into wake-ups (new
        // work) and cancellations (of requests that may be running here)
        let driver = tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(msg) = messages.next().await {
                match msg {
                    Ok(AsyncMessage::Notification(n)) if n.channel() == COMPLETED_CHANNEL => {
                        if let Some(id) = cancelled_request(n.payload()) {
                            let _ = cancel_tx.send(id);
                        }
                    }
                    Ok(AsyncMessage::Notification(n))
                        if n.payload() == derivation_walk::WALK_PAYLOAD =>
                    {
                        notify_walk.notify_one();
                        let _ = announce_tx.send(None);
                    }
                    Ok(AsyncMessage::Notification(n)) => {
                        // a token is one backend's: with its pid it names one announcement
                        let announced = Announcement::parse(n.payload()).map(|mut a| {
                            a.token = format!("{}.{}", n.process_id(), a.token);
                            a
                        });
                        let _ = announce_tx.send(announced);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("steadytext worker: connection error: {e}");
                        break;
                    }
                }
            }
            let _ = closed_tx.send(true);
        });
        let result = match Statements::for_session(&client).await {
            Ok(sql) => {
                let wakes = Wakes { jobs: &mut announcements, walk: &walk_wake };
                self.serve_queue(&client, &sql, wakes, &mut cancels, &mut closed).await
            }
            Err(e) => Err(e),
        };
        drop(client);
        driver.abort();
        result
    }

    /// Claims into free slots and records each request as it finishes, until shutdown (then
    /// what runs is finished first) or a lost connection (then what runs is dropped, and the
    /// next session releases its rows).
    async fn serve_queue(
        &mut self,
        client: &Client,
        sql: &Statements,
        wakes: Wakes<'_>,
        cancels: &mut mpsc::UnboundedReceiver<String>,
        closed: &mut watch::Receiver<bool>,
    ) -> Result<(), DaemonError> {
        client.batch_execute(&format!("LISTEN {JOBS_CHANNEL}; LISTEN {COMPLETED_CHANNEL}")).await?;
        self.release_orphans(client, sql).await?;
        let host = host_name();
        let pid = std::process::id() as i32;
        let lease = Duration::from_secs(u64::from(self.tuning.lease));
        self.heartbeat(client, sql, &host, pid, "running", None).await?;
        eprintln!("steadytext worker {}: listening on steadytext_jobs", self.worker_id);
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
        let mut running = Running::default();
        let mut beat = tokio::time::interval(lease / 3);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        beat.tick().await; // the first tick is immediate
        let mut last_rescue: Option<Instant> = None;
        let mut purge = purge::Purge::default();
        let mut walk = derivation_walk::Walk::default();
        let mut settings =
            settings::resolve(client, sql, &self.tuning, self.max_batch, lease).await?;
        // the row shows the slots at once (the first heartbeat came before the settings)
        self.heartbeat(client, sql, &host, pid, "running", Some(&settings)).await?;
        let mut settings_read = Instant::now();
        // new work was announced since the settings were read: read them again before claiming
        let mut announced = false;
        // whether the queue may hold work this session could claim
        let mut claim = true;
        // whether work may be waiting when a slot frees (see where requests finish)
        let mut more = true;
        let mut next_poll = tokio::time::Instant::now();
        let mut stopping = false;
        loop {
            if *self.shutdown.borrow() && !stopping {
                stopping = true;
                self.heartbeat(client, sql, &host, pid, "stopping", Some(&settings)).await?;
            }
            if stopping && running.is_empty() {
                self.heartbeat(client, sql, &host, pid, "stopped", Some(&settings)).await?;
                return Ok(());
            }
            if last_rescue.is_none_or(|t| t.elapsed() >= lease / 2) {
                let limit = settings.max_retries as i32;
                let rescued: i32 = client.query_one(&sql.rescue_expired, &[&limit]).await?.get(0);
                last_rescue = Some(Instant::now());
                // back to pending after a backoff: the claim finds when they are due
                if rescued > 0 {
                    claim = true;
                }
            }
            if !stopping {
                purge.run_if_due(client, &sql.purge, settings.retention).await?;
                if let Some(statement) = &sql.walk {
                    if walk.run_if_due(client, statement).await?.is_some_and(|n| n > 0) {
                        claim = true;
                    }
                }
            }
            if claim && !stopping {
                if announced || settings_read.elapsed() >= SETTINGS_REFRESH {
                    settings =
                        settings::resolve(client, sql, &self.tuning, self.max_batch, lease).await?;
                    (settings_read, announced) = (Instant::now(), false);
                }
                let free = running.free(settings.concurrency as usize);
                if free > 0 {
                    let (jobs, filled) = self.claim(client, sql, free, lease).await?;
                    // less than asked: nothing more is due; wait for NOTIFY or the next poll
                    (claim, more) = (filled, filled);
                    let short = !filled;
                    for job in jobs {
                        running.start(&self.service, job, settings.timeout);
                    }
                    next_poll = if short {
                        self.next_poll(client, sql, settings.poll_interval).await?
                    } else {
                        tokio::time::Instant::now() + settings.poll_interval
                    };
                    // embeddings left slots free (a claim that counts requests): claim again
                    if claim && running.free(settings.concurrency as usize) > 0 {
                        continue;
                    }
                } else {
                    // a finishing request frees a slot and claims again
                    (claim, more) = (false, true);
                }
            }
            tokio::select! {
                Some(first) = running.join_next(), if !running.is_empty() => {
                    // with every other request that finishes within the gather window of it,
                    // so that those that completed are recorded in one statement and their
                    // slots are claimed again together: the engine answers the generations
                    // that end at one step at once, and a claim's jobs reach it together
                    let mut finished = vec![first];
                    while let Ok(Some(next)) =
                        tokio::time::timeout(GATHER_WINDOW, running.join_next()).await
                    {
                        finished.push(next);
                    }
                    // the freed slots claim at once only if more work may be waiting: the
                    // last claim filled every slot, an announcement picked this worker while
                    // none was free, or a request just went back to pending; otherwise the
                    // queue was empty at the last claim and new work announces itself
                    let unsettled = self.record_finished(client, sql, finished, &settings).await?;
                    claim = more || unsettled;
                }
                Some(id) = cancels.recv() => {
                    // stopped only once the row says it is no longer this worker's to finish
                    if running.runs(&id) {
                        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                            [&id, &self.worker_id];
                        let row = client.query_one(&sql.still_running, &args).await?;
                        if row.get::<_, bool>(0) {
                            eprintln!(
                                "steadytext worker {}: ignored a cancel notification for {id}, \
                                 which is still processing here (not sent by a cancel)",
                                self.worker_id
                            );
                        } else {
                            running.cancel(&id);
                        }
                    }
                }
                Some(first) = wakes.jobs.recv() => {
                    let me = &self.worker_id;
                    let slots = settings.concurrency;
                    let mut picked = settings.peers.picked(me, first.as_ref(), slots);
                    while let Ok(next) = wakes.jobs.try_recv() {
                        picked |= settings.peers.picked(me, next.as_ref(), slots);
                    }
                    // the settings are read again before the next claim, whenever it comes
                    announced = true;
                    if picked {
                        claim = true;
                    } else {
                        // another worker claims them; look later in case it cannot
                        let fallback = tokio::time::Instant::now() + settings.poll_interval;
                        next_poll = next_poll.min(fallback);
                    }
                }
                _ = wakes.walk.notified() => walk.now(),
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(walk.next())),
                    if sql.walk.is_some() && !stopping => {}
                _ = tokio::time::sleep_until(next_poll), if !claim && !stopping => {
                    claim = true;
                    next_poll = tokio::time::Instant::now() + settings.poll_interval;
                }
                // the rescue of expired leases (of workers that died) is due
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(
                        last_rescue.map_or_else(Instant::now, |t| t + lease / 2))),
                    if !stopping => {}
                _ = beat.tick() => {
                    let status = if stopping { "stopping" } else { "running" };
                    self.heartbeat(client, sql, &host, pid, status, Some(&settings)).await?;
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(purge.next())),
                    if settings.retention.is_some() && !stopping => {}
                _ = self.shutdown.changed(), if !stopping => {}
                _ = closed.changed() => return Err(lost()),
            }
        }
    }

    /// Gives back the requests a previous session of this worker id still holds (its
    /// connection broke mid-batch, or the process restarted): nothing runs them any more, and
    /// this session's heartbeats would otherwise keep renewing their leases. Each counts as a
    /// failed attempt (retried at once while retries are left).
    async fn release_orphans(&self, client: &Client, sql: &Statements) -> Result<(), DaemonError> {
        let released = client.query(&sql.release_orphans, &[&self.worker_id]).await?;
        if !released.is_empty() {
            eprintln!(
                "steadytext worker {}: released {} request(s) of an earlier session",
                self.worker_id,
                released.len()
            );
        }
        Ok(())
    }

    /// When to poll next after a claim came back short: after `poll_interval`, or when the
    /// earliest pending request (a retry backing off) becomes due if that is later; with
    /// nothing pending, after [`IDLE_POLL`] (new requests announce themselves with NOTIFY).
    async fn next_poll(
        &self,
        client: &Client,
        sql: &Statements,
        poll_interval: Duration,
    ) -> Result<tokio::time::Instant, DaemonError> {
        let due: Option<f64> = client.query_one(&sql.next_due, &[]).await?.get(0);
        let wait = match due {
            None => IDLE_POLL,
            Some(secs) => poll_interval.max(Duration::from_secs_f64(secs.max(0.0))).min(IDLE_POLL),
        };
        Ok(tokio::time::Instant::now() + wait)
    }

    /// Upserts this worker's row and extends its leases; with its slots (`settings`, once
    /// resolved) and its models, when the extension takes them (0.2.0).
    async fn heartbeat(
        &self,
        client: &Client,
        sql: &Statements,
        host: &str,
        pid: i32,
        status: &str,
        settings: Option<&Settings>,
    ) -> Result<(), DaemonError> {
        let lease = format!("{} seconds", self.tuning.lease);
        match &sql.heartbeat_reports {
            Some(reports) => {
                let slots = settings.map(|s| s.concurrency as i32);
                let models = self.models();
                let args: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                    [&self.worker_id, &host, &pid, &lease, &status, &slots, &models];
                client.query_one(reports, &args).await?;
            }
            None => {
                client
                    .query_one(&sql.heartbeat, &[&self.worker_id, &host, &pid, &lease, &status])
                    .await?;
            }
        }
        Ok(())
    }

    /// The models the engine loaded, as the heartbeat reports them (`generation: …,
    /// embedding: …`).
    fn models(&self) -> Option<String> {
        let engine = &self.service.engine;
        let loaded: Vec<String> =
            [("generation", &engine.generation), ("embedding", &engine.embedding)]
                .into_iter()
                .filter_map(|(role, m)| m.as_ref().ok().map(|m| format!("{role}: {}", m.name)))
                .collect();
        (!loaded.is_empty()).then(|| loaded.join(", "))
    }

    /// Claims requests for `free` half slots ([`Running::free`]): in one statement whose costs
    /// fill them where the extension has it, else half as many requests (an embedding then
    /// leaves room for another claim). Returns the jobs and whether they filled what was asked
    /// (if not, nothing more was due).
    async fn claim(
        &self,
        client: &Client,
        sql: &Statements,
        free: usize,
        lease: Duration,
    ) -> Result<(Vec<Job>, bool), DaemonError> {
        let lease = format!("{} seconds", lease.as_secs());
        let rows = match &sql.claim_costed {
            Some(costed) => {
                let other = job::OTHER_COST as i32;
                client.query(costed, &[&self.worker_id, &(free as i32), &lease, &other]).await?
            }
            None => {
                let batch = free.div_ceil(2) as i32;
                client.query(&sql.claim, &[&self.worker_id, &batch, &lease]).await?
            }
        };
        let mut jobs = Vec::with_capacity(rows.len());
        for r in rows {
            let request_id: String = r.get(0);
            let function_name: String = r.get(1);
            let parameters: String = r.get(2);
            let request =
                serde_json::from_str(&parameters).map_err(|e| e.to_string()).and_then(|p| {
                    QueuedRequest::from_row(&function_name, p).map_err(|e| e.to_string())
                });
            match request {
                Ok(request) => jobs.push(Job { request_id, request, priority: r.get(3) }),
                // a row no worker can ever run fails for good at once
                Err(reason) => {
                    let error = DaemonError::BadJob { function: function_name, reason };
                    client
                        .query_one(
                            &sql.fail_for_good,
                            &[&request_id, &self.worker_id, &error.to_string()],
                        )
                        .await?;
                }
            }
        }
        let filled = match sql.claim_costed {
            Some(_) => jobs.iter().map(Job::cost).sum::<usize>() >= free,
            None => jobs.len() == free.div_ceil(2),
        };
        Ok((jobs, filled))
    }

    /// Records requests that finished together: the results of all that succeeded in one
    /// `steadytext_queue_complete_many` statement, then each failure on its own (its retry rule
    /// is per request); cancelled ones only in the metrics (their row already says so).
    async fn record_finished(
        &self,
        client: &Client,
        sql: &Statements,
        finished: Vec<Finished>,
        settings: &Settings,
    ) -> Result<bool, DaemonError> {
        let metrics = &self.service.metrics;
        let mut completed = Vec::new();
        let mut unsettled = false;
        for (job, outcome, elapsed) in finished {
            match outcome {
                Some(Ok(result)) => completed.push((job, result, elapsed)),
                Some(Err(e)) => {
                    unsettled |=
                        self.record_failure(client, sql, &job, e, elapsed, settings).await?;
                }
                None => metrics.record_job(job.function().sql_name(), "cancelled", elapsed),
            }
        }
        if completed.is_empty() {
            return Ok(unsettled);
        }
        let ids: Vec<&str> = completed.iter().map(|(job, _, _)| job.request_id.as_str()).collect();
        let results: Vec<&str> = completed.iter().map(|(_, result, _)| result.as_str()).collect();
        let written: Vec<bool> =
            client.query_one(&sql.complete_many, &[&self.worker_id, &ids, &results]).await?.get(0);
        for ((job, _, elapsed), written) in completed.iter().zip(written) {
            // not written: cancelled meanwhile, the lease lost to another worker, or put back
            // to pending (a derivation's row was locked)
            let outcome = if written { "completed" } else { "dropped" };
            unsettled |= !written;
            metrics.record_job(job.function().sql_name(), outcome, *elapsed);
        }
        Ok(unsettled)
    }

    /// Records a failed attempt (retried or failed for good by `steadytext_queue_fail`); true
    /// when it went back to pending.
    async fn record_failure(
        &self,
        client: &Client,
        sql: &Statements,
        job: &Job,
        e: DaemonError,
        elapsed: Duration,
        settings: &Settings,
    ) -> Result<bool, DaemonError> {
        // whether retries are left is steadytext_queue_fail's rule; this worker adds only its
        // own limit
        let limit = settings.max_retries as i32;
        let row = client
            .query_one(
                &sql.fail,
                &[&job.request_id, &self.worker_id, &e.to_string(), &e.retryable(), &limit],
            )
            .await?;
        let status: Option<String> = row.get(0);
        let outcome = match status.as_deref() {
            Some("pending") => "retried",
            Some(_) => "failed",
            None => "dropped",
        };
        self.service.metrics.record_job(job.function().sql_name(), outcome, elapsed);
        Ok(outcome == "retried")
    }
}

/// A request that finished: its job, its outcome (`None` when it was cancelled) and how long it
/// ran.
type Finished = (Job, Option<Result<String, DaemonError>>, Duration);

/// What a request's task returns: its outcome and how long it ran.
type TaskOutput = (Result<String, DaemonError>, Duration);

/// The requests one session is running, one task each, with what is needed to record each
/// outcome and to stop a cancelled one.
#[derive(Default)]
struct Running {
    tasks: JoinSet<TaskOutput>,
    /// The job and start time of each task.
    jobs: HashMap<tokio::task::Id, (Job, Instant)>,
    /// The task of each running request, by request_id.
    by_request: HashMap<String, AbortHandle>,
}

impl Running {
    /// The half slots free of `concurrency` slots: a request takes a slot, except embeddings of
    /// one text, two of which share one ([`Job::cost`]). The engine embeds the texts that wait
    /// together in one call between decode steps, so a worker whose slots hold embeddings keeps
    /// a second call's texts waiting in the engine while one is embedded, and records and
    /// replaces the first while the second runs, instead of leaving the engine idle meanwhile
    /// (a 10 000-row backfill of issue #23: 56.7 and 60.9 s, against 62.9 and 70.8 s with one
    /// embedding per slot). A claim of only generations never takes more than `concurrency` of
    /// them.
    fn free(&self, concurrency: usize) -> usize {
        let taken: usize = self.jobs.values().map(|(job, _)| job.cost()).sum();
        (2 * concurrency).saturating_sub(taken)
    }

    fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Starts `job` on the service, limited to `timeout` (when it runs out, the request's
    /// engine work is stopped and the attempt fails with [`DaemonError::Timeout`]).
    fn start(&mut self, service: &Service, job: Job, timeout: Duration) {
        let service = service.clone();
        let (request, priority) = (job.request.clone(), job.priority);
        let handle = self.tasks.spawn(async move {
            let started = Instant::now();
            let run = job::run(&service, request, priority);
            let outcome = tokio::time::timeout(timeout, run)
                .await
                .unwrap_or(Err(DaemonError::Timeout(timeout.as_secs())));
            (outcome, started.elapsed())
        });
        self.by_request.insert(job.request_id.clone(), handle.clone());
        self.jobs.insert(handle.id(), (job, Instant::now()));
    }

    /// Whether `request_id` runs here.
    fn runs(&self, request_id: &str) -> bool {
        self.by_request.contains_key(request_id)
    }

    /// Stops the task of `request_id` if it runs here: dropping its engine call stops the
    /// generation before the engine's next decode step, and frees the slot.
    fn cancel(&mut self, request_id: &str) {
        if let Some(handle) = self.by_request.get(request_id) {
            handle.abort();
        }
    }

    /// The next request to finish: its job, its outcome (`None` when it was cancelled) and how
    /// long it ran. `None` when nothing runs.
    async fn join_next(&mut self) -> Option<Finished> {
        let joined = self.tasks.join_next_with_id().await?;
        Some(self.finished(joined))
    }

    /// The finished request of a joined task.
    fn finished(&mut self, joined: Result<(tokio::task::Id, TaskOutput), JoinError>) -> Finished {
        let (id, outcome) = match joined {
            Ok((id, (outcome, _))) => (id, Some(outcome)),
            Err(e) if e.is_cancelled() => (e.id(), None),
            Err(e) => (
                e.id(),
                Some(Err(DaemonError::Engine(steadytext_core::CoreError::Decode(format!(
                    "the request's task failed: {e}"
                ))))),
            ),
        };
        let (job, started) = self.jobs.remove(&id).expect("every task has its job");
        self.by_request.remove(&job.request_id);
        (job, outcome, started.elapsed())
    }
}

/// The request_id of a completion notice with status `cancelled`.
/// What wakes a worker's session besides its own requests finishing.
struct Wakes<'a> {
    /// `NOTIFY steadytext_jobs`: new requests may be due (the announcement, if the payload is
    /// one: `wake.rs`).
    jobs: &'a mut mpsc::UnboundedReceiver<Option<Announcement>>,
    /// `NOTIFY steadytext_jobs, 'walk'`: a derivation started walking its source.
    walk: &'a Notify,
}

fn cancelled_request(payload: &str) -> Option<String> {
    let notice = Completion::parse(payload)?;
    (notice.status == Outcome::Cancelled).then_some(notice.request_id)
}

fn lost() -> DaemonError {
    DaemonError::Io(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection to PostgreSQL lost",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cancellations_name_a_request_to_stop() {
        let id = "0b7e4d1c-8f4e-4c55-9a43-3c1f8d2e6a10";
        let note = |status: &str| {
            format!(r#"{{"request_id": "{id}", "function": "generate", "status": "{status}"}}"#)
        };
        assert_eq!(cancelled_request(&note("cancelled")).as_deref(), Some(id));
        assert_eq!(cancelled_request(&note("completed")), None);
        assert_eq!(cancelled_request(&note("failed")), None);
        assert_eq!(cancelled_request("not json"), None);
    }
}
