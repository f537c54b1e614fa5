//! What the dashboard reads from PostgreSQL and the actions it takes (cancel or retry a request,
//! pause or resume a derivation), as the daemon's role
//! (a member of `steadytext_worker`, which sees every request), on its own connection. Every
//! statement names the extension's objects through its schema, as `queue_sql.rs` does.

use serde_json::{Map, Value};
use tokio_postgres::{Client, Row, Statement};

use crate::db_session::Prepare;
use crate::error::DaemonError;
use crate::queue_sql::pin_session;

/// Rows of the request list per page.
pub const PAGE: i64 = 50;

/// Most rows of the queue one page of the list reads (newest first, through the primary key),
/// whatever its filters: a filter that matches few rows shows fewer on a page rather than
/// reading the whole queue, and the next page goes on from where this one stopped.
pub const SCAN: i64 = 20_000;

/// Above this many rows (PostgreSQL's estimate) the overview counts finished requests in a 1 %
/// sample of the table's pages instead of reading every row; pending and processing ones are
/// always counted exactly, through their partial indexes.
pub const EXACT_COUNT_ROWS: f32 = 200_000.0;

/// Above this many open (pending and processing) requests on such a queue, their split between
/// functions comes from the sample too, scaled to their exact totals: counting it exactly reads
/// one heap page per row, which a backlog spread over the table makes nearly every page.
pub const EXACT_OPEN_ROWS: i64 = 10_000;

/// The dashboard's statements, prepared on its connection.
pub struct UiStatements {
    /// function, status, count over the whole queue.
    counts: Statement,
    /// The queue's estimated row count (`pg_class.reltuples`).
    size: Statement,
    /// function, status, count of the pending and processing requests (each status through
    /// its partial index).
    counts_open: Statement,
    /// function, status, count of the finished requests in a 1 % sample of the pages.
    counts_sampled: Statement,
    /// The numbers of pending and of processing requests (index-only scans of their partial
    /// indexes).
    open_totals: Statement,
    /// function, status, count of the open requests in a 1 % sample of the pages.
    open_sampled: Statement,
    /// Per minute of the last hour: epoch seconds, completed, failed, cancelled.
    per_minute: Statement,
    /// The first row at or after id `$1`: its id, and whether it was created within the hour
    /// (the probe of [`UiStatements::first_of_the_hour`]'s search).
    probe: Statement,
    /// Per minute of the last hour: epoch seconds, requests enqueued (rows from id `$1` on).
    arrivals: Statement,
    /// The smallest and largest ids (the ends of the primary key).
    id_range: Statement,
    /// Per function, of the requests finished in the last hour: count, p50/p95 wait and run (ms).
    latency: Statement,
    /// The last 10 failures of the last hour.
    failures: Statement,
    /// The workers with the requests each holds.
    workers: Statement,
    /// A page of the list: filters `$1` status, `$2` function, `$3` priority, `$4` max age
    /// (seconds), `$5` ids below, `$6` rows; reads at most [`SCAN`] rows, and the last row it
    /// may read comes last, matched or not (`matched`, and `n = SCAN`).
    list: Statement,
    /// One request's row as JSON, by request id `$1` (text).
    detail: Statement,
    /// One request's status, by request id `$1` (text).
    status: Statement,
    /// Cancels request `$1` (text) if it is pending or processing.
    cancel: Statement,
    /// Puts request `$1` (text) back to pending if it failed for good.
    retry: Statement,
    /// Every derivation with its rows' state (`steadytext_derivation_status`).
    derivations: Statement,
    /// The bookkeeping table's estimated row count (`pg_class.reltuples`).
    derivation_rows_size: Statement,
    /// The same columns as `derivations`, with the rows in sync and those waiting without a
    /// request estimated from a 1 % sample of the bookkeeping table's pages; the rows with a
    /// request under way, with a recorded change, and failed ones counted exactly through
    /// their indexes.
    derivations_sampled: Statement,
    /// The source and destination of derivation `$1`.
    derivation_of: Statement,
    /// Pauses or resumes (`$2`) derivation `$1`.
    operate: Statement,
}

/// The oldest extension version whose objects the dashboard's statements name (the workers'
/// concurrency and models, the retry, derivations).
pub const NEEDED_VERSION: &str = "0.2.0";

/// Whether extension version `found` is at least `needed` (dot-separated numbers; a part that
/// is not a number counts as 0).
pub fn version_at_least(found: &str, needed: &str) -> bool {
    let parts = |v: &str| v.split('.').map(|p| p.parse::<u64>().unwrap_or(0)).collect::<Vec<_>>();
    let (mut f, mut n) = (parts(found), parts(needed));
    let len = f.len().max(n.len());
    f.resize(len, 0);
    n.resize(len, 0);
    f >= n
}

impl Prepare for UiStatements {
    async fn prepare(client: &Client) -> Result<Self, DaemonError> {
        let s = pin_session(client).await?;
        // the pages' statements are short reads; a plan whose estimate crosses jit_above_cost
        // (the status view's, over a large derivation) spent 100–150 ms compiling itself to
        // save less than that (measured: the sampled derivations 103–106 ms with JIT, 7 ms
        // without)
        client.batch_execute("SET jit = off").await?;
        let found: String = client
            .query_one("SELECT extversion FROM pg_extension WHERE extname = 'pg_steadytext'", &[])
            .await?
            .get(0);
        if !version_at_least(&found, NEEDED_VERSION) {
            return Err(DaemonError::ExtensionOutdated { found, needed: NEEDED_VERSION });
        }
        let q = format!("{s}.steadytext_queue");
        // a finished request's time: the purge's index (steadytext_queue_finished_idx)
        let finished = "coalesce(completed_at, failed_at)";
        let recent = format!(
            "status IN ('completed', 'failed', 'cancelled') AND {finished} > now() - interval '1 hour'"
        );
        Ok(Self {
            counts: client
                .prepare(&format!(
                    "SELECT function_name, status, count(*) FROM {q} GROUP BY 1, 2 ORDER BY 1, 2"
                ))
                .await?,
            size: client
                .prepare(&format!("SELECT reltuples FROM pg_class WHERE oid = '{q}'::regclass"))
                .await?,
            counts_open: client
                .prepare(&format!(
                    "SELECT function_name, 'pending', count(*) FROM {q}
                     WHERE status = 'pending' GROUP BY 1
                     UNION ALL
                     SELECT function_name, 'processing', count(*) FROM {q}
                     WHERE status = 'processing' GROUP BY 1"
                ))
                .await?,
            open_totals: client
                .prepare(&format!(
                    "SELECT (SELECT count(*) FROM {q} WHERE status = 'pending'),
                            (SELECT count(*) FROM {q} WHERE status = 'processing')"
                ))
                .await?,
            open_sampled: client
                .prepare(&format!(
                    "SELECT function_name, status, count(*) FROM {q} TABLESAMPLE SYSTEM (1)
                     WHERE status IN ('pending', 'processing') GROUP BY 1, 2"
                ))
                .await?,
            counts_sampled: client
                .prepare(&format!(
                    "SELECT function_name, status, count(*) * 100 FROM {q} TABLESAMPLE SYSTEM (1)
                     WHERE status IN ('completed', 'failed', 'cancelled') GROUP BY 1, 2"
                ))
                .await?,
            probe: client
                .prepare(&format!(
                    "SELECT id, created_at > now() - interval '1 hour' FROM {q}
                     WHERE id >= $1 ORDER BY id LIMIT 1"
                ))
                .await?,
            id_range: client
                .prepare(&format!("SELECT coalesce(min(id), 0), coalesce(max(id), 0) FROM {q}"))
                .await?,
            arrivals: client
                .prepare(&format!(
                    "SELECT extract(epoch FROM date_trunc('minute', created_at))::bigint, count(*)
                     FROM {q} WHERE id >= $1 AND created_at > now() - interval '1 hour'
                     GROUP BY 1 ORDER BY 1"
                ))
                .await?,
            per_minute: client
                .prepare(&format!(
                    "SELECT extract(epoch FROM date_trunc('minute', {finished}))::bigint,
                            count(*) FILTER (WHERE status = 'completed'),
                            count(*) FILTER (WHERE status = 'failed'),
                            count(*) FILTER (WHERE status = 'cancelled')
                     FROM {q} WHERE {recent} GROUP BY 1 ORDER BY 1"
                ))
                .await?,
            latency: client
                .prepare(&format!(
                    "SELECT function_name, count(*),
                            percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY
                                extract(epoch FROM started_at - created_at) * 1000),
                            percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY
                                extract(epoch FROM {finished} - started_at) * 1000)
                     FROM {q} WHERE {recent} AND status = 'completed' GROUP BY 1 ORDER BY 1"
                ))
                .await?,
            failures: client
                .prepare(&format!(
                    "SELECT request_id::text, function_name, error, failed_at::text FROM {q}
                     WHERE {recent} AND status = 'failed' ORDER BY {finished} DESC LIMIT 10"
                ))
                .await?,
            workers: client
                .prepare(&format!(
                    "SELECT w.worker_id, w.host, w.pid, w.status, w.last_heartbeat::text,
                            extract(epoch FROM now() - w.last_heartbeat)::float8,
                            (SELECT count(*) FROM {q} j
                             WHERE j.status = 'processing' AND j.worker_id = w.worker_id),
                            w.concurrency, w.models
                     FROM {s}.steadytext_workers w ORDER BY w.worker_id"
                ))
                .await?,
            list: client
                .prepare(&format!(
                    "SELECT id, request_id::text, function_name, status, priority,
                            created_at::text,
                            left(coalesce(parameters->>'prompt', parameters->>'text_input',
                                          parameters->>'query', ''), 120),
                            error IS NOT NULL, matched, n = {SCAN}
                     FROM (SELECT *,
                                  ($1::text IS NULL OR status = $1)
                                  AND ($2::text IS NULL OR function_name = $2)
                                  AND ($3::integer IS NULL OR priority = $3)
                                  AND ($4::float8 IS NULL
                                       OR created_at > now() - make_interval(secs => $4))
                                  AS matched,
                                  row_number() OVER (ORDER BY id DESC) AS n
                           FROM (SELECT * FROM {q} WHERE ($5::bigint IS NULL OR id < $5)
                                 ORDER BY id DESC LIMIT {SCAN}) AS scanned) AS r
                     WHERE matched OR n = {SCAN}
                     ORDER BY id DESC LIMIT $6"
                ))
                .await?,
            detail: client
                .prepare(&format!(
                    "SELECT to_jsonb(q)::text FROM {q} q WHERE request_id = $1::text::uuid"
                ))
                .await?,
            status: client
                .prepare(&format!("SELECT status FROM {q} WHERE request_id = $1::text::uuid"))
                .await?,
            cancel: client
                .prepare(&format!("SELECT {s}.steadytext_queue_cancel($1::text::uuid)"))
                .await?,
            retry: client
                .prepare(&format!("SELECT {s}.steadytext_queue_retry($1::text::uuid)"))
                .await?,
            derivations: client
                .prepare(&format!(
                    "SELECT id, source::text, destination::text, kind, state, rows_total,
                            rows_in_sync, rows_pending, rows_failed, coalesce(last_error, ''),
                            extract(epoch FROM lag)::float8, backfilling
                     FROM {s}.steadytext_derivation_status ORDER BY id"
                ))
                .await?,
            derivation_rows_size: client
                .prepare(&format!(
                    "SELECT reltuples FROM pg_class
                     WHERE oid = '{s}.steadytext_derivation_rows'::regclass"
                ))
                .await?,
            derivations_sampled: client
                .prepare(&format!(
                    "SELECT d.id, d.source::text, d.destination::text, d.function_name, d.state,
                            s.in_sync + s.waiting + u.under_way + c.changed + f.failed,
                            s.in_sync, s.waiting + u.under_way + c.changed, f.failed,
                            coalesce(f.last_error, ''),
                            coalesce(extract(epoch FROM now() - least(u.oldest, c.oldest,
                                CASE WHEN d.walking AND d.state = 'active' THEN d.walk_since END
                            ))::float8, 0),
                            d.walking AND d.state = 'active'
                     FROM {s}.steadytext_derivations d
                     CROSS JOIN LATERAL (
                         SELECT count(*) FILTER (
                                    WHERE r.input_hash IS NOT DISTINCT FROM r.derived_hash
                                      AND r.derived_epoch = d.epoch) * 100 AS in_sync,
                                count(*) FILTER (
                                    WHERE r.error IS NULL AND r.request_id IS NULL
                                      AND NOT (r.input_hash IS NOT DISTINCT FROM r.derived_hash
                                               AND r.derived_epoch = d.epoch)) * 100 AS waiting
                         FROM {s}.steadytext_derivation_rows r TABLESAMPLE SYSTEM (1)
                         WHERE r.derivation_id = d.id) s
                     CROSS JOIN LATERAL (
                         SELECT count(*) AS under_way, min(r.changed_at) AS oldest
                         FROM {s}.steadytext_derivation_rows r
                         WHERE r.derivation_id = d.id AND r.request_id IS NOT NULL) u
                     CROSS JOIN LATERAL (
                         SELECT count(*) AS failed,
                                (SELECT e.error FROM {s}.steadytext_derivation_rows e
                                 WHERE e.derivation_id = d.id AND e.error IS NOT NULL
                                 ORDER BY e.changed_at DESC LIMIT 1) AS last_error
                         FROM {s}.steadytext_derivation_rows r
                         WHERE r.derivation_id = d.id AND r.error IS NOT NULL) f
                     CROSS JOIN LATERAL (
                         SELECT count(DISTINCT k.source_key) AS changed,
                                min(k.changed_at) AS oldest
                         FROM {s}.steadytext_derivation_changes k
                         WHERE k.derivation_id = d.id) c
                     ORDER BY d.id"
                ))
                .await?,
            derivation_of: client
                .prepare(&format!(
                    "SELECT source::text, destination::text FROM {s}.steadytext_derivations
                     WHERE id = $1"
                ))
                .await?,
            operate: client
                .prepare(&format!("SELECT {s}.steadytext_derivation_operate($1, $2)"))
                .await?,
        })
    }
}

/// Requests of one function in one status.
pub struct StatusCount {
    /// `function_name`.
    pub function: String,
    /// `status`.
    pub status: String,
    /// How many.
    pub count: i64,
}

/// Requests that finished in one minute.
pub struct Minute {
    /// The minute's start, seconds since the epoch.
    pub at: i64,
    /// Completed in it.
    pub completed: i64,
    /// Failed for good in it.
    pub failed: i64,
    /// Cancelled in it.
    pub cancelled: i64,
    /// Enqueued in it.
    pub enqueued: i64,
}

/// Wait and run times of one function's requests completed in the last hour.
pub struct Latency {
    /// `function_name`.
    pub function: String,
    /// Completed in the last hour.
    pub completed: i64,
    /// Created → started (of the last attempt), p50 and p95, in ms.
    pub wait_ms: [f64; 2],
    /// Started → completed, p50 and p95, in ms.
    pub run_ms: [f64; 2],
}

/// A request that failed for good.
pub struct Failure {
    /// Its uuid.
    pub request_id: String,
    /// `function_name`.
    pub function: String,
    /// The last error.
    pub error: String,
    /// When.
    pub failed_at: String,
}

/// A worker as its heartbeats left it.
pub struct WorkerRow {
    /// `worker_id`.
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i32,
    /// running, stopping or stopped.
    pub status: String,
    /// Last heartbeat.
    pub last_heartbeat: String,
    /// Seconds since it.
    pub seconds_since: f64,
    /// Requests it holds (processing).
    pub claimed: i64,
    /// Its slots, as it reported them.
    pub concurrency: Option<i32>,
    /// Its models, as it reported them.
    pub models: Option<String>,
}

/// One row of the request list.
pub struct ListRow {
    /// The row's `id` (the list's order and page key).
    pub id: i64,
    /// Its uuid.
    pub request_id: String,
    /// `function_name`.
    pub function: String,
    /// `status`.
    pub status: String,
    /// `priority`.
    pub priority: i32,
    /// `created_at`.
    pub created_at: String,
    /// The start of its prompt, text or query.
    pub preview: String,
    /// Whether it holds an error.
    pub has_error: bool,
}

/// The list's filters, each optional.
#[derive(Debug, Default, Clone)]
pub struct Filters {
    /// `status`.
    pub status: Option<String>,
    /// `function_name`.
    pub function: Option<String>,
    /// `priority`.
    pub priority: Option<i32>,
    /// Created within this many seconds.
    pub max_age_secs: Option<f64>,
}

/// A derivation and the state of its rows.
pub struct DerivationRow {
    /// Its id.
    pub id: i64,
    /// The source table.
    pub source: String,
    /// The destination column or chunk table.
    pub destination: String,
    /// Its kind (function).
    pub kind: String,
    /// active, paused or disabled.
    pub state: String,
    /// Source rows it knows.
    pub total: i64,
    /// In sync.
    pub in_sync: i64,
    /// Waiting for a result.
    pub pending: i64,
    /// Failed for good.
    pub failed: i64,
    /// The last error, or empty.
    pub last_error: String,
    /// Age of the oldest change not yet derived, in seconds.
    pub lag_s: f64,
    /// Whether a walk (backfill, resume, rederive) is under way.
    pub backfilling: bool,
}

/// Everything the overview shows from PostgreSQL.
pub struct Overview {
    /// Requests by function and status.
    pub counts: Vec<StatusCount>,
    /// Whether the finished requests' counts are estimated from a sample.
    pub sampled: bool,
    /// Finished per minute, last hour.
    pub minutes: Vec<Minute>,
    /// Latency by function, last hour.
    pub latency: Vec<Latency>,
    /// Recent failures.
    pub failures: Vec<Failure>,
    /// The workers.
    pub workers: Vec<WorkerRow>,
    /// The derivations.
    pub derivations: Vec<DerivationRow>,
    /// Whether the derivations' rows in sync and waiting are estimated from a sample.
    pub derivations_sampled: bool,
}

impl UiStatements {
    /// The overview's figures.
    pub async fn overview(&self, db: &Client) -> Result<Overview, DaemonError> {
        let size: f32 = db.query_one(&self.size, &[]).await?.get(0);
        let sampled = size > EXACT_COUNT_ROWS;
        let counts = if sampled {
            let totals = db.query_one(&self.open_totals, &[]).await?;
            let (pending, processing): (i64, i64) = (totals.get(0), totals.get(1));
            let sample = if pending + processing > EXACT_OPEN_ROWS {
                status_counts(&db.query(&self.open_sampled, &[]).await?)
            } else {
                Vec::new()
            };
            let mut c = match (
                scaled(&sample, "pending", pending),
                scaled(&sample, "processing", processing),
            ) {
                (Some(mut p), Some(q)) => {
                    p.extend(q);
                    p
                }
                // few open, or the sample missed one status: count them exactly
                _ => status_counts(&db.query(&self.counts_open, &[]).await?),
            };
            c.extend(status_counts(&db.query(&self.counts_sampled, &[]).await?));
            c
        } else {
            status_counts(&db.query(&self.counts, &[]).await?)
        };
        let finished = db.query(&self.per_minute, &[]).await?;
        let first = self.first_of_the_hour(db).await?;
        let arrivals = db.query(&self.arrivals, &[&first]).await?;
        let mut minutes: Vec<Minute> = finished
            .iter()
            .map(|r| Minute {
                at: r.get(0),
                completed: r.get(1),
                failed: r.get(2),
                cancelled: r.get(3),
                enqueued: 0,
            })
            .collect();
        for r in &arrivals {
            let (at, n): (i64, i64) = (r.get(0), r.get(1));
            match minutes.iter_mut().find(|m| m.at == at) {
                Some(m) => m.enqueued = n,
                None => {
                    minutes.push(Minute { at, completed: 0, failed: 0, cancelled: 0, enqueued: n })
                }
            }
        }
        minutes.sort_by_key(|m| m.at);
        let latency = db.query(&self.latency, &[]).await?;
        let failures = db.query(&self.failures, &[]).await?;
        let workers = db.query(&self.workers, &[]).await?;
        // (the status view counts every row of every derivation: 237–353 ms over 1 000 000)
        let bookkeeping: f32 = db.query_one(&self.derivation_rows_size, &[]).await?.get(0);
        let derivations_sampled = bookkeeping > EXACT_COUNT_ROWS;
        let derivations = db
            .query(
                if derivations_sampled { &self.derivations_sampled } else { &self.derivations },
                &[],
            )
            .await?;
        let pair = |r: &Row, i: usize| -> [f64; 2] {
            let v: Vec<f64> = r.get(i);
            [v.first().copied().unwrap_or(0.0), v.get(1).copied().unwrap_or(0.0)]
        };
        Ok(Overview {
            counts: {
                let mut c = counts;
                c.sort_by(|a, b| a.function.cmp(&b.function));
                c
            },
            sampled,
            minutes,
            latency: latency
                .iter()
                .map(|r| Latency {
                    function: r.get(0),
                    completed: r.get(1),
                    wait_ms: pair(r, 2),
                    run_ms: pair(r, 3),
                })
                .collect(),
            failures: failures
                .iter()
                .map(|r| Failure {
                    request_id: r.get(0),
                    function: r.get(1),
                    error: r.get(2),
                    failed_at: r.get(3),
                })
                .collect(),
            workers: workers
                .iter()
                .map(|r| WorkerRow {
                    id: r.get(0),
                    host: r.get(1),
                    pid: r.get(2),
                    status: r.get(3),
                    last_heartbeat: r.get(4),
                    seconds_since: r.get(5),
                    claimed: r.get(6),
                    concurrency: r.get(7),
                    models: r.get(8),
                })
                .collect(),
            derivations: derivations
                .iter()
                .map(|r| DerivationRow {
                    id: r.get(0),
                    source: r.get(1),
                    destination: r.get(2),
                    kind: r.get(3),
                    state: r.get(4),
                    total: r.get(5),
                    in_sync: r.get(6),
                    pending: r.get(7),
                    failed: r.get(8),
                    last_error: r.get(9),
                    lag_s: r.get(10),
                    backfilling: r.get(11),
                })
                .collect(),
            derivations_sampled,
        })
    }

    /// The smallest id of the rows created within the last hour, found by a binary search over
    /// the primary key (ids follow creation: a row's id is taken when it is inserted), so the
    /// hour's arrivals are counted from its rows alone, whatever the queue holds.
    async fn first_of_the_hour(&self, db: &Client) -> Result<i64, DaemonError> {
        let range = db.query_one(&self.id_range, &[]).await?;
        let (mut lo, mut hi): (i64, i64) = (range.get(0), range.get::<_, i64>(1).saturating_add(1));
        // invariant: every row below lo is older than the hour; the first row at or after hi
        // (if any) is within it
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match db.query_opt(&self.probe, &[&mid]).await? {
                Some(r) if !r.get::<_, bool>(1) => lo = r.get::<_, i64>(0) + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }

    /// A page of the list: up to [`PAGE`] matching rows with an id below `before`, newest
    /// first, among the next [`SCAN`] rows; and the id the next page starts below, if the
    /// queue goes on.
    pub async fn list(
        &self,
        db: &Client,
        f: &Filters,
        before: Option<i64>,
    ) -> Result<(Vec<ListRow>, Option<i64>), DaemonError> {
        let rows = db
            .query(
                &self.list,
                &[&f.status, &f.function, &f.priority, &f.max_age_secs, &before, &(PAGE + 1)],
            )
            .await?;
        let mut out = Vec::new();
        let mut next = None;
        for r in &rows {
            let (matched, last_scanned): (bool, bool) = (r.get(8), r.get(9));
            if out.len() as i64 == PAGE {
                next = out.last().map(|l: &ListRow| l.id);
                break;
            }
            if last_scanned {
                // the last row this page may read: older ones are on the next page
                next = Some(r.get(0));
            }
            if !matched {
                break;
            }
            out.push(ListRow {
                id: r.get(0),
                request_id: r.get(1),
                function: r.get(2),
                status: r.get(3),
                priority: r.get(4),
                created_at: r.get(5),
                preview: r.get(6),
                has_error: r.get(7),
            });
        }
        Ok((out, next))
    }

    /// One request's row (every column, as `to_jsonb` gives it), if it exists.
    pub async fn detail(
        &self,
        db: &Client,
        request_id: &str,
    ) -> Result<Option<Map<String, Value>>, DaemonError> {
        let row = db.query_opt(&self.detail, &[&request_id]).await?;
        Ok(row.and_then(|r| match serde_json::from_str(r.get(0)) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }))
    }

    /// One request's status, if it exists.
    pub async fn status(
        &self,
        db: &Client,
        request_id: &str,
    ) -> Result<Option<String>, DaemonError> {
        Ok(db.query_opt(&self.status, &[&request_id]).await?.map(|r| r.get(0)))
    }

    /// Cancels a pending or processing request; whether it was.
    pub async fn cancel(&self, db: &Client, request_id: &str) -> Result<bool, DaemonError> {
        Ok(db.query_one(&self.cancel, &[&request_id]).await?.get(0))
    }

    /// The source table and destination of derivation `id`, if it exists.
    pub async fn derivation_of(
        &self,
        db: &Client,
        id: i64,
    ) -> Result<Option<(String, String)>, DaemonError> {
        Ok(db.query_opt(&self.derivation_of, &[&id]).await?.map(|r| (r.get(0), r.get(1))))
    }

    /// Pauses (`pause`) or resumes (`resume`) derivation `id`.
    pub async fn operate(&self, db: &Client, id: i64, action: &str) -> Result<bool, DaemonError> {
        Ok(db.query_one(&self.operate, &[&id, &action]).await?.get(0))
    }

    /// Puts a request that failed for good back to pending; whether it had failed.
    pub async fn retry(&self, db: &Client, request_id: &str) -> Result<bool, DaemonError> {
        Ok(db.query_one(&self.retry, &[&request_id]).await?.get(0))
    }
}

/// Rows of (function, status, count).
fn status_counts(rows: &[Row]) -> Vec<StatusCount> {
    rows.iter()
        .map(|r| StatusCount { function: r.get(0), status: r.get(1), count: r.get(2) })
        .collect()
}

/// The `total` requests of `status` split between functions in the proportions of `sample`
/// (largest remainders, so that the parts add up to `total`); `None` when the sample holds none
/// of them while there are some, or when the total is small enough to count exactly.
fn scaled(sample: &[StatusCount], status: &str, total: i64) -> Option<Vec<StatusCount>> {
    let seen: Vec<&StatusCount> = sample.iter().filter(|c| c.status == status).collect();
    let weight: i64 = seen.iter().map(|c| c.count).sum();
    if total == 0 {
        return Some(Vec::new());
    }
    if weight == 0 {
        return None;
    }
    let mut parts: Vec<(StatusCount, i64)> = seen
        .iter()
        .map(|c| {
            let exact = i128::from(total) * i128::from(c.count);
            let (whole, rest) = (exact / i128::from(weight), exact % i128::from(weight));
            let part = StatusCount {
                function: c.function.clone(),
                status: status.to_owned(),
                count: whole as i64,
            };
            (part, rest as i64)
        })
        .collect();
    let short = total - parts.iter().map(|(p, _)| p.count).sum::<i64>();
    parts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.function.cmp(&b.0.function)));
    for (p, _) in parts.iter_mut().take(short as usize) {
        p.count += 1;
    }
    Some(parts.into_iter().map(|(p, _)| p).collect())
}

/// Whether `s` is a uuid's text form (what the queries cast with `::uuid`), so that a malformed
/// id is a 404 rather than an SQL error.
pub fn is_uuid(s: &str) -> bool {
    let groups = [8, 4, 4, 4, 12];
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == groups.len()
        && parts
            .iter()
            .zip(groups)
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::{is_uuid, scaled, version_at_least, StatusCount, NEEDED_VERSION};

    #[test]
    fn a_sampled_split_adds_up_to_the_exact_total() {
        let c = |function: &str, status: &str, count| StatusCount {
            function: function.into(),
            status: status.into(),
            count,
        };
        let sample = [
            c("generate", "pending", 7),
            c("embed", "pending", 2),
            c("rerank", "pending", 1),
            c("generate", "processing", 3),
        ];
        let split = scaled(&sample, "pending", 19_501).unwrap();
        assert_eq!(split.iter().map(|p| p.count).sum::<i64>(), 19_501);
        let of = |f: &str| split.iter().find(|p| p.function == f).unwrap().count;
        assert_eq!((of("generate"), of("embed"), of("rerank")), (13_651, 3_900, 1_950));
        assert_eq!(scaled(&sample, "processing", 500).unwrap()[0].count, 500);
        assert!(scaled(&sample, "failed", 3).is_none(), "nothing sampled");
        assert!(scaled(&sample, "failed", 0).unwrap().is_empty());
    }

    #[test]
    fn only_uuids_are_request_ids() {
        assert!(is_uuid("0b7e4d1c-8f4e-4c55-9a43-3c1f8d2e6a10"));
        assert!(is_uuid("0B7E4D1C-8F4E-4C55-9A43-3C1F8D2E6A10"));
        for bad in
            ["", "x", "0b7e4d1c8f4e4c559a433c1f8d2e6a10", "0b7e4d1c-8f4e-4c55-9a43-3c1f8d2e6a1g"]
        {
            assert!(!is_uuid(bad), "{bad:?}");
        }
    }

    #[test]
    fn versions_compare_by_their_numbers() {
        assert!(version_at_least("0.2.0", NEEDED_VERSION));
        assert!(version_at_least("0.10.0", "0.2.0"), "not as text");
        assert!(version_at_least("1.0", "0.2.0"));
        assert!(version_at_least("0.2", "0.2.0"));
        assert!(!version_at_least("0.1.0", NEEDED_VERSION));
        assert!(!version_at_least("0.1.9", "0.2.0"));
    }
}
