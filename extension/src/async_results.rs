//! Following asynchronous requests: status, results (waiting for them), cancellation.
#![allow(clippy::type_complexity)] // pgrx spells RETURNS TABLE(...) as a tuple type

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use pgrx::pg_sys::BuiltinOid::UUIDOID;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{PgOid, Uuid};
use steadytext_api::function::Function;

use crate::completion_wakeup::{self, Sleeper, Wake};
use crate::error::{or_raise, required, required_elements, SqlError};
use crate::{enqueue_buffer, ext_schema, queue_owner};

/// First pause between two looks at a request being waited for, when polling (the library is
/// not preloaded); each pause doubles up to `LONGEST_WAIT`.
const FIRST_WAIT: Duration = Duration::from_millis(5);
/// Longest pause between two looks when polling.
const LONGEST_WAIT: Duration = Duration::from_millis(500);
/// Longest sleep on the completion condition variable before looking again anyway (a safety net
/// for completions that wake nobody, e.g. COMMIT PREPARED or a direct UPDATE of the queue).
const SAFETY_NET: Duration = Duration::from_secs(1);

/// Status and timings of one request (error P0002 if the caller has no such request).
/// `completed_at` is when it finished: completed, cancelled, or failed for good.
#[pg_extern(volatile, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_check_async(
    request_id: Option<Uuid>,
) -> TableIterator<
    'static,
    (
        name!(status, Option<String>),
        name!(result, Option<String>),
        name!(error, Option<String>),
        name!(created_at, Option<Timestamp>),
        name!(started_at, Option<Timestamp>),
        name!(completed_at, Option<Timestamp>),
        name!(priority, Option<i32>),
    ),
> {
    or_raise((|| {
        let id = required("request_id", request_id)?;
        enqueue_buffer::flush()?;
        let sql = format!(
            "SELECT status, result, error, created_at::timestamp, started_at::timestamp,
                    coalesce(completed_at, failed_at)::timestamp, priority
             FROM {} WHERE request_id = $1",
            ext_schema::qualified("steadytext_queue")?
        );
        let row = Spi::connect(|client| {
            let table = client.select(&sql, Some(1), &[id.into()])?;
            table
                .into_iter()
                .next()
                .map(|r| -> Result<_, SqlError> {
                    Ok((
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })
                .transpose()
        })?;
        let row = row.ok_or_else(|| SqlError::NotFound(id.to_string()))?;
        Ok(TableIterator::once(row))
    })())
}

/// One row of `steadytext_check_async_batch`.
type BatchRow = (
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Timestamp>,
    Option<Timestamp>,
);

/// Status of many requests, one row per id in the order given; unknown ids get status
/// 'not_found'. `completed_at` is when the request finished (completed, cancelled or failed).
#[pg_extern(volatile, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_check_async_batch(
    request_ids: Option<Vec<Option<Uuid>>>,
) -> TableIterator<
    'static,
    (
        name!(request_id, Option<Uuid>),
        name!(status, Option<String>),
        name!(result, Option<String>),
        name!(error, Option<String>),
        name!(created_at, Option<Timestamp>),
        name!(completed_at, Option<Timestamp>),
    ),
> {
    or_raise((|| {
        let ids = required_elements("request_ids", request_ids)?;
        Ok(TableIterator::new(check_batch(ids)?))
    })())
}

/// `steadytext_check_async_batch` for ids written as text, as in `ARRAY['<uuid>', '<uuid>']`
/// (an array of string literals is a text[], which PostgreSQL does not cast to uuid[]
/// implicitly). Each element is read in the forms uuid input accepts; a malformed one is an
/// error (22P02) naming its position.
#[pg_extern(name = "steadytext_check_async_batch", volatile, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_check_async_batch_text(
    request_ids: Option<Vec<Option<String>>>,
) -> TableIterator<
    'static,
    (
        name!(request_id, Option<Uuid>),
        name!(status, Option<String>),
        name!(result, Option<String>),
        name!(error, Option<String>),
        name!(created_at, Option<Timestamp>),
        name!(completed_at, Option<Timestamp>),
    ),
> {
    or_raise((|| {
        let texts = required_elements("request_ids", request_ids)?;
        let ids = texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                parse_uuid(text).ok_or_else(|| SqlError::MalformedUuid {
                    arg: "request_ids",
                    index: i + 1,
                    value: text.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TableIterator::new(check_batch(ids)?))
    })())
}

/// The rows of `steadytext_check_async_batch` for `ids`, in their order.
fn check_batch(ids: Vec<Uuid>) -> Result<Vec<BatchRow>, SqlError> {
    if ids.is_empty() {
        return Err(steadytext_api::validate::InputError::EmptyArray { arg: "request_ids" }.into());
    }
    enqueue_buffer::flush()?;
    let sql = format!(
        "SELECT r.id, coalesce(q.status, 'not_found'), q.result, q.error,
                q.created_at::timestamp, coalesce(q.completed_at, q.failed_at)::timestamp
         FROM unnest($1::uuid[]) WITH ORDINALITY AS r(id, n)
         LEFT JOIN {} q ON q.request_id = r.id
         ORDER BY r.n",
        ext_schema::qualified("steadytext_queue")?
    );
    Spi::connect(|client| {
        let table = client.select(&sql, None, &[ids.into()])?;
        table
            .into_iter()
            .map(|r| -> Result<_, SqlError> {
                Ok((r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
            })
            .collect()
    })
}

/// Reads a uuid in the text forms PostgreSQL's uuid input accepts (`uuid_in`): 32 hex digits in
/// either case, optionally in braces, with an optional hyphen after any group of four digits.
fn parse_uuid(text: &str) -> Option<Uuid> {
    let body = match text.strip_prefix('{') {
        Some(inner) => inner.strip_suffix('}')?,
        None => text,
    };
    let mut rest = body.as_bytes();
    let mut bytes = [0u8; 16];
    for (i, byte) in bytes.iter_mut().enumerate() {
        let [hi, lo, tail @ ..] = rest else { return None };
        let digit = |b: u8| (b as char).to_digit(16);
        *byte = (digit(*hi)? * 16 + digit(*lo)?) as u8;
        rest = tail;
        // a hyphen may follow any group of four digits but the last
        if i % 2 == 1 && i < 15 {
            rest = rest.strip_prefix(b"-").unwrap_or(rest);
        }
    }
    rest.is_empty().then(|| Uuid::from_bytes(bytes))
}

/// Cancels a pending or processing request of the caller: true if it is now cancelled, false if
/// it had already finished. Unknown ids are an error (P0002). The caller must see the request
/// (row-level security: its own, or any for steadytext_worker); the cancel itself is written as
/// the queue's owner, since ordinary roles may not update the queue.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_cancel_async(request_id: Option<Uuid>) -> bool {
    or_raise((|| {
        let id = required("request_id", request_id)?;
        if lookup(id)?.is_none() {
            return Err(SqlError::NotFound(id.to_string()));
        }
        let sql = format!("SELECT {}($1)", ext_schema::qualified("steadytext_queue_cancel")?);
        queue_owner::run_as_owner(ext_schema::queue_table()?, || {
            Ok(Spi::get_one_with_args::<bool>(&sql, &[id.into()])?.unwrap_or(false))
        })
    })())
}

/// What a waiter needs to know about a request.
struct Snapshot {
    function_name: String,
    status: String,
    result: Option<String>,
    error: Option<String>,
    /// The request's row was last written by this (uncommitted) transaction.
    written_by_us: bool,
}

thread_local! {
    /// The kept plan of [`lookup`], prepared on a waiter's first look (a woken waiter then goes
    /// straight to the executor).
    /// With the oid of the table it reads.
    static LOOKUP_PLAN: RefCell<Option<(pg_sys::Oid, Rc<OwnedPreparedStatement>)>> =
        const { RefCell::new(None) };
}

/// Reads the request with a fresh snapshot (an updating SPI call takes a new one per statement
/// in READ COMMITTED), so a waiter sees workers' commits.
fn lookup(id: Uuid) -> Result<Option<Snapshot>, SqlError> {
    enqueue_buffer::flush()?;
    let table = ext_schema::queue_table()?;
    Spi::connect_mut(|client| {
        let plan = match LOOKUP_PLAN.with_borrow(Clone::clone) {
            Some((planned_for, plan)) if planned_for == table => plan,
            _ => {
                let sql = format!(
                    "SELECT status, result, error, xmin::text, function_name
                     FROM {} WHERE request_id = $1",
                    ext_schema::qualified("steadytext_queue")?
                );
                let plan = Rc::new(client.prepare_mut(&sql, &[PgOid::BuiltIn(UUIDOID)])?.keep());
                LOOKUP_PLAN.set(Some((table, plan.clone())));
                plan
            }
        };
        let table = client.update(&*plan, Some(1), &[id.into()])?;
        let Some(row) = table.into_iter().next() else {
            return Ok(None);
        };
        let xmin: u32 = row.get::<String>(4)?.and_then(|x| x.parse().ok()).unwrap_or(0);
        // SAFETY: a plain lookup in the backend's transaction state.
        let written_by_us = unsafe {
            pg_sys::TransactionIdIsCurrentTransactionId(pg_sys::TransactionId::from_inner(xmin))
        };
        Ok(Some(Snapshot {
            function_name: row.get::<String>(5)?.unwrap_or_default(),
            status: row.get::<String>(1)?.unwrap_or_default(),
            result: row.get(2)?,
            error: row.get(3)?,
            written_by_us,
        }))
    })
}

/// Sleeps up to `pause` on the process latch, so that query cancel, statement_timeout and
/// postmaster death interrupt the wait.
fn pause(pause: Duration) {
    let ms = pause.as_millis().clamp(1, i64::MAX as u128) as std::ffi::c_long;
    // SAFETY: MyLatch is this backend's own latch; WaitLatch/ResetLatch are the documented way
    // for a backend to sleep interruptibly.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pgrx::check_for_interrupts!();
}

/// How this session's most recent wait went (see `steadytext_wait_stats`).
#[derive(Debug, Clone, Copy, Default)]
struct WaitStats {
    /// Sleeps on the condition variable that ended because a finishing transaction committed.
    completion_wakeups: i64,
    /// Sleeps that ended at their time limit: the safety net, or each pause when polling.
    timer_wakeups: i64,
}

thread_local! {
    static LAST_WAIT: Cell<WaitStats> =
        const { Cell::new(WaitStats { completion_wakeups: 0, timer_wakeups: 0 }) };
}

/// Waits up to `seconds` for request `id` to finish; returns its function name and result.
fn wait_for(id: Uuid, seconds: i32) -> Result<(String, String), SqlError> {
    if seconds < 0 {
        return Err(SqlError::NegativeTimeout(seconds));
    }
    LAST_WAIT.set(WaitStats::default());
    let deadline = Instant::now() + Duration::from_secs(seconds as u64);
    let sleeper = Sleeper::new();
    let mut wait = FIRST_WAIT;
    loop {
        // Read the completion counter before the row: a commit after this read bumps it.
        let counter = sleeper.as_ref().map(Sleeper::prepare);
        let job = lookup(id)?.ok_or_else(|| SqlError::NotFound(id.to_string()))?;
        match job.status.as_str() {
            "completed" => return Ok((job.function_name, job.result.unwrap_or_default())),
            "failed" => {
                return Err(SqlError::Failed {
                    id: id.to_string(),
                    error: job.error.unwrap_or_default(),
                })
            }
            "cancelled" => return Err(SqlError::Cancelled(id.to_string())),
            _ if job.written_by_us => return Err(SqlError::OwnTransaction(id.to_string())),
            // SAFETY: reading the backend's isolation level.
            _ if unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_REPEATABLE_READ as i32 => {
                return Err(SqlError::FrozenSnapshot(id.to_string()))
            }
            _ => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(SqlError::Timeout { id: id.to_string(), seconds, status: job.status });
        }
        let mut stats = LAST_WAIT.get();
        match (&sleeper, counter) {
            (Some(sleeper), Some(counter)) => {
                match sleeper.sleep(counter, (deadline - now).min(SAFETY_NET)) {
                    Wake::Completion => stats.completion_wakeups += 1,
                    Wake::Timer => stats.timer_wakeups += 1,
                }
            }
            _ => {
                pause(wait.min(deadline - now));
                wait = (wait * 2).min(LONGEST_WAIT);
                stats.timer_wakeups += 1;
            }
        }
        LAST_WAIT.set(stats);
    }
}

/// Diagnostics of this session's most recent `steadytext_get_async_result` (or
/// `steadytext_get_async_embedding`) wait: `mechanism` is 'condition_variable' when the library
/// is preloaded (waiters are woken by completing commits) and 'polling' otherwise;
/// `completion_wakeups` counts sleeps that a finishing commit ended, `timer_wakeups` sleeps that
/// ended at their time limit (each poll, or the 1 s safety net); `completions` is the number of
/// commits that finished requests since the server started (NULL without preloading).
#[pg_extern(volatile, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_wait_stats() -> TableIterator<
    'static,
    (
        name!(mechanism, String),
        name!(completion_wakeups, i64),
        name!(timer_wakeups, i64),
        name!(completions, Option<i64>),
    ),
> {
    let stats = LAST_WAIT.get();
    let mechanism = if completion_wakeup::available() { "condition_variable" } else { "polling" };
    TableIterator::once((
        mechanism.to_owned(),
        stats.completion_wakeups,
        stats.timer_wakeups,
        completion_wakeup::completions().map(|n| n as i64),
    ))
}

/// Waits up to `timeout_seconds` (0: just look) for a request to finish and returns its result:
/// text, embeddings as `[0.1,0.2,…]` (castable to pgvector's `vector`), rerank results as JSON.
/// Errors at once for an unknown id, a failed or cancelled request, a request the current
/// transaction enqueued and has not committed, and when the transaction's snapshot is frozen.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_get_async_result(
    request_id: Option<Uuid>,
    timeout_seconds: default!(Option<i32>, 30),
) -> String {
    or_raise((|| {
        let id = required("request_id", request_id)?;
        let seconds = required("timeout_seconds", timeout_seconds)?;
        Ok(wait_for(id, seconds)?.1)
    })())
}

/// Like `steadytext_get_async_result`, for an embedding request, as `real[]`.
#[pg_extern(volatile, parallel_unsafe, requires = ["queue_transitions"])]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_get_async_embedding(
    request_id: Option<Uuid>,
    timeout_seconds: default!(Option<i32>, 30),
) -> Vec<f32> {
    or_raise((|| {
        let id = required("request_id", request_id)?;
        let seconds = required("timeout_seconds", timeout_seconds)?;
        let (function_name, result) = wait_for(id, seconds)?;
        if function_name != Function::Embed.sql_name() {
            return Err(SqlError::NotAnEmbedding { id: id.to_string(), function_name });
        }
        steadytext_api::vector_text::parse(&result)
            .ok_or(SqlError::MalformedEmbedding(id.to_string()))
    })())
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::error::SqlError;

    /// A whole life cycle inside one transaction: enqueue, claim, complete, then read it back.
    #[pg_test]
    fn enqueue_claim_complete_get() {
        let id = Spi::get_one::<pgrx::Uuid>("SELECT steadytext_generate_async('hello', 8)")
            .unwrap()
            .unwrap();
        let claimed = Spi::get_one::<i64>("SELECT count(*) FROM steadytext_queue_claim('t', 5)")
            .unwrap()
            .unwrap();
        assert_eq!(claimed, 1);
        let done = Spi::get_one_with_args::<bool>(
            "SELECT steadytext_queue_complete($1, 't', 'world')",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(done, Some(true));
        let result = Spi::get_one_with_args::<String>(
            "SELECT steadytext_get_async_result($1, 5)",
            &[id.into()],
        )
        .unwrap();
        assert_eq!(result.as_deref(), Some("world"));
    }

    /// Waiting on a request this transaction queued is an immediate error, not a timeout.
    #[rustfmt::skip]
    #[pg_test(error = "async request 00000000-0000-0000-0000-000000000001 was enqueued or changed by the current transaction, which has not committed; no worker can see it until then")]
    fn waiting_on_own_uncommitted_request_fails_at_once() {
        Spi::run(
            "INSERT INTO steadytext_queue (request_id, function_name, parameters)
             VALUES ('00000000-0000-0000-0000-000000000001', 'generate', '{\"prompt\": \"x\"}')",
        )
        .unwrap();
        let _ = Spi::get_one::<String>(
            "SELECT steadytext_get_async_result('00000000-0000-0000-0000-000000000001', 60)",
        );
    }

    /// The text forms of a uuid read as PostgreSQL's `::uuid` reads them, and the others not.
    #[pg_test]
    fn uuids_parse_like_uuid_input() {
        for text in [
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
        ] {
            let expected =
                Spi::get_one_with_args::<pgrx::Uuid>("SELECT $1::uuid", &[text.into()]).unwrap();
            assert_eq!(super::parse_uuid(text), expected, "{text}");
        }
        for text in [
            "",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11-",
            "-a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eeb-c99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99--9c0b-4ef8-bb6d-6bb9bd380a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            " a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1\u{e9}",
            "+a0eebc9-9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            assert_eq!(super::parse_uuid(text), None, "{text}");
        }
    }

    /// Each error kind has its documented SQLSTATE.
    #[pg_test]
    fn sqlstates() {
        use pgrx::PgSqlErrorCode::*;
        use steadytext_api::validate::InputError;
        let cases = [
            (SqlError::Null("prompt"), ERRCODE_NULL_VALUE_NOT_ALLOWED),
            (
                SqlError::Input(InputError::EmptyText { arg: "prompt" }),
                ERRCODE_INVALID_PARAMETER_VALUE,
            ),
            (SqlError::Input(InputError::Regex("x".into())), ERRCODE_INVALID_REGULAR_EXPRESSION),
            (
                SqlError::QueueFull { depth: 1, adding: 1, limit: 1 },
                ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            ),
            (SqlError::NotFound("x".into()), ERRCODE_NO_DATA_FOUND),
            (
                SqlError::Timeout { id: "x".into(), seconds: 1, status: "pending".into() },
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.sqlstate(), code, "{error}");
        }
    }

    /// The settings are registered with their documented defaults.
    #[pg_test]
    fn setting_defaults() {
        for (name, value) in [
            ("steadytext.max_queue_size", "10000"),
            ("steadytext.worker_poll_interval", "1s"),
            ("steadytext.max_retries", "3"),
            ("steadytext.worker_timeout", "5min"),
            ("steadytext.worker_concurrency", "0"),
            ("steadytext.queue_retention", "7d"),
            ("steadytext.result_cache_max_entries", "100000"),
            ("steadytext.result_cache_max_age", "30d"),
        ] {
            let got = Spi::get_one::<String>(&format!("SHOW {name}")).unwrap();
            assert_eq!(got.as_deref(), Some(value), "{name}");
        }
        assert_eq!(crate::gucs::worker_timeout_secs(), 300);
    }
}
