//! Every `steadytext.*` setting (GUC) of the extension, declared once here and read through the
//! typed accessors below. The worker settings' names, defaults and ranges come from
//! `steadytext_api::settings`, which the worker's flags share. They exist in a backend once the library is loaded (any pg_steadytext
//! function loads it; `shared_preload_libraries` loads it everywhere). Settings marked "sighup"
//! change with `ALTER SYSTEM SET …; SELECT pg_reload_conf();` and running workers pick them up.
//!
//! `shared_preload_libraries = 'pg_steadytext'` is not required, but it is recommended: only then
//! does the library get the shared memory that wakes `steadytext_get_async_result` waiters at the
//! commit that finishes their request; without it they poll (5 ms doubling to 500 ms). See
//! `completion_wakeup.rs` and docs/async-waits.md.

use std::ffi::{CStr, CString};

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use steadytext_api::limits::{PRIORITY_MAX, PRIORITY_MIN};
use steadytext_api::settings::{self, WorkerSetting};

static DAEMON_URL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"http://127.0.0.1:8765"));
static DAEMON_TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static DAEMON_CONNECT_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(2000);
static MAX_QUEUE_SIZE: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static MAX_QUEUE_SIZE_PER_ROLE: GucSetting<i32> = GucSetting::<i32>::new(0);
static MAX_PRIORITY: GucSetting<i32> = GucSetting::<i32>::new(PRIORITY_MAX);
static WORKER_CONCURRENCY: GucSetting<i32> =
    GucSetting::<i32>::new(settings::WORKER_CONCURRENCY.default);
static WORKER_POLL_INTERVAL: GucSetting<i32> =
    GucSetting::<i32>::new(settings::WORKER_POLL_INTERVAL.default);
static MAX_RETRIES: GucSetting<i32> = GucSetting::<i32>::new(settings::MAX_RETRIES.default);
static WORKER_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(settings::WORKER_TIMEOUT.default);
static RESULT_CACHE_MAX_ENTRIES: GucSetting<i32> = GucSetting::<i32>::new(100_000);
static RESULT_CACHE_MAX_AGE: GucSetting<i32> = GucSetting::<i32>::new(30 * 86_400);
static QUEUE_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(settings::QUEUE_RETENTION.default);

/// Defines the GUC of a worker setting: its name, default and range come from the one
/// declaration in `steadytext-api`, and so does the first sentence of its long description
/// (`extra` follows it).
fn define_worker_guc(
    setting: WorkerSetting,
    short: &'static CStr,
    extra: &str,
    value: &'static GucSetting<i32>,
    context: GucContext,
) {
    let long = format!("{} {extra}", setting.describe());
    let long: &'static CStr = Box::leak(
        CString::new(long.trim_end()).expect("no NUL in descriptions").into_boxed_c_str(),
    );
    let flags = match setting.unit {
        Some("s") => GucFlags::UNIT_S,
        _ => GucFlags::default(),
    };
    GucRegistry::define_int_guc(
        setting.guc,
        short,
        long,
        value,
        setting.min,
        setting.max,
        context,
        flags,
    );
}

/// Check hook of `steadytext.daemon_token`: refuses a non-empty token from where other roles
/// could read it — `ALTER DATABASE/ROLE ... SET` and function `SET` clauses (validated with source
/// "test" before they are stored), and values stored that way before the library was loaded
/// (applied with source database or user).
unsafe extern "C-unwind" fn token_source_is_private(
    value: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    source: pgrx::pg_sys::GucSource::Type,
) -> bool {
    use pgrx::pg_sys::GucSource::*;
    // SAFETY: PostgreSQL passes a valid pointer to the proposed value (NULL or a C string).
    let empty = unsafe { (*value).is_null() || **value == 0 };
    let public = matches!(source, PGC_S_TEST | PGC_S_DATABASE | PGC_S_USER | PGC_S_DATABASE_USER);
    if empty || !public {
        return true;
    }
    // SAFETY: the documented way for a check hook to word its refusal (palloc'd strings).
    unsafe {
        pgrx::pg_sys::GUC_check_errcode(
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE as i32,
        );
        pgrx::pg_sys::GUC_check_errmsg_string = pgrx::pg_sys::pstrdup(
            c"steadytext.daemon_token cannot be set per database, per role or per function: \
              every role can read those settings"
                .as_ptr(),
        );
        pgrx::pg_sys::GUC_check_errhint_string = pgrx::pg_sys::pstrdup(
            c"Set it in postgresql.conf or with ALTER SYSTEM, then SELECT pg_reload_conf()."
                .as_ptr(),
        );
    }
    false
}

/// Registers the settings; called once from `_PG_init`.
pub fn init() {
    GucRegistry::define_string_guc(
        c"steadytext.daemon_url",
        c"Daemon the synchronous functions call: http://host:port or unix:/path (its --socket).",
        c"Default 'http://127.0.0.1:8765'. Superuser-settable.",
        &DAEMON_URL,
        GucContext::Suset,
        GucFlags::default(),
    );
    // SAFETY: the check hook is a plain function that cannot panic.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"steadytext.daemon_token",
            c"Bearer token sent to the daemon, for one started with --token; empty sends none. \
              Hidden from other roles.",
            c"Default empty (none). Superuser-only, hidden from non-superusers. Set it in \
              postgresql.conf or with ALTER SYSTEM: ALTER DATABASE/ROLE ... SET and function SET \
              clauses are refused, since every role can read pg_db_role_setting and pg_proc.",
            &DAEMON_TOKEN,
            GucContext::Suset,
            GucFlags::SUPERUSER_ONLY,
            Some(token_source_is_private),
            None,
            None,
        );
    }
    GucRegistry::define_int_guc(
        c"steadytext.daemon_connect_timeout",
        c"How long a synchronous function waits to connect to the daemon (the reply itself is \
          bounded by statement_timeout).",
        c"Default '2s', range 100ms..60s. Waiting for the reply itself is bounded by \
          statement_timeout and can be cancelled.",
        &DAEMON_CONNECT_TIMEOUT,
        100,
        60_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"steadytext.max_queue_size",
        c"Most asynchronous requests pending or processing at once; enqueueing beyond it fails \
          with SQLSTATE 53400.",
        c"Default 10000, range 1..100000000. Enqueueing beyond it fails with SQLSTATE 53400. \
          Each session counts the queue at most once a second, adds its own enqueues to that \
          count, counts again sooner once they reach an eighth of the room the count left (so \
          on every enqueue within 8 of the limit), and always before refusing. A session alone \
          never exceeds the limit; N sessions enqueueing at once exceed it only if N > 8, by at \
          most (N - 8)/8 of the room they counted, plus requests of uncommitted transactions.",
        &MAX_QUEUE_SIZE,
        1,
        100_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"steadytext.max_queue_size_per_role",
        c"Most asynchronous requests one role may have pending or processing at once, beside \
          steadytext.max_queue_size; 0 sets no limit of its own. Beyond it: SQLSTATE 53400.",
        c"Default 0 (none), range 0..100000000. Counted as steadytext.max_queue_size is, for the \
          role the call runs as (current_user). Superuser-set; set it for one role with ALTER \
          ROLE name SET steadytext.max_queue_size_per_role = n (applies to its new sessions).",
        &MAX_QUEUE_SIZE_PER_ROLE,
        0,
        100_000_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"steadytext.max_priority",
        c"Highest priority a role that is not a superuser may give an asynchronous request; \
          asking for more fails with SQLSTATE 42501.",
        c"Default 1000 (the whole range), range -1000..1000. Superuser-set; set it for one role \
          with ALTER ROLE name SET steadytext.max_priority = n (applies to its new sessions).",
        &MAX_PRIORITY,
        PRIORITY_MIN,
        PRIORITY_MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    define_worker_guc(
        settings::WORKER_CONCURRENCY,
        c"Requests each queue worker claims and processes at once, two embeddings counting as \
          one (0: as many as its engine decodes together, its --max-batch); its --concurrency \
          overrides it.",
        "0 fills the worker's continuous decode batch; more would wait in the engine holding a \
         lease.",
        &WORKER_CONCURRENCY,
        GucContext::Sighup,
    );
    define_worker_guc(
        settings::WORKER_POLL_INTERVAL,
        c"How often a queue worker polls while a pending request waits to become due (a retry \
          backing off); with nothing pending it waits for NOTIFY steadytext_jobs, polling once a \
          minute. Its --poll-interval overrides it.",
        "The environment variable is in seconds.",
        &WORKER_POLL_INTERVAL,
        GucContext::Sighup,
    );
    define_worker_guc(
        settings::MAX_RETRIES,
        c"Retries of a failing asynchronous request: recorded per request when it is enqueued, \
          and each worker's own limit (its --max-retries overrides that).",
        "Recorded per request (max_retries) when it is enqueued.",
        &MAX_RETRIES,
        GucContext::Suset,
    );
    define_worker_guc(
        settings::WORKER_TIMEOUT,
        c"Time limit of one attempt of a queued request, after which a worker fails and retries \
          it; its --timeout overrides it.",
        "The environment variable is in seconds.",
        &WORKER_TIMEOUT,
        GucContext::Sighup,
    );
    define_worker_guc(
        settings::QUEUE_RETENTION,
        c"How long finished asynchronous requests (completed, failed, cancelled) are kept; \
          queue workers then delete them in small batches. 0 keeps them forever.",
        "The environment variable is in seconds. Workers delete up to 500 rows per statement \
         (steadytext_queue_purge), about once a minute and back to back while more are due; \
         a purged request's id is unknown to steadytext_check_async (SQLSTATE P0002) and \
         'not_found' in steadytext_check_async_batch.",
        &QUEUE_RETENTION,
        GucContext::Sighup,
    );
    GucRegistry::define_int_guc(
        c"steadytext.result_cache_max_entries",
        c"Most results kept in the result cache the workers share (steadytext_result_cache); \
          the oldest beyond it are evicted.",
        c"Default 100000, range 0..2147483647 (0 keeps none). The workers evict in batches \
          (steadytext_result_cache_evict) about once a minute, so the table can exceed it by \
          what they write in between.",
        &RESULT_CACHE_MAX_ENTRIES,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"steadytext.result_cache_max_age",
        c"How long a result stays in the result cache the workers share \
          (steadytext_result_cache) before it is evicted.",
        c"Default '30d', range 1s..2147483647s. Evicted by the workers about once a minute.",
        &RESULT_CACHE_MAX_AGE,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
}

/// `steadytext.daemon_url` (default `http://127.0.0.1:8765`).
pub fn daemon_url() -> String {
    DAEMON_URL
        .get()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "http://127.0.0.1:8765".to_owned())
}

/// `steadytext.daemon_token` (default none).
pub fn daemon_token() -> Option<String> {
    DAEMON_TOKEN.get().map(|s| s.to_string_lossy().into_owned()).filter(|s| !s.is_empty())
}

/// `steadytext.daemon_connect_timeout` (default 2000 ms, range 100..60000 ms).
pub fn daemon_connect_timeout() -> std::time::Duration {
    std::time::Duration::from_millis(DAEMON_CONNECT_TIMEOUT.get() as u64)
}

/// `steadytext.max_queue_size` (default 10000, range 1..100000000).
pub fn max_queue_size() -> i32 {
    MAX_QUEUE_SIZE.get()
}

/// `steadytext.max_queue_size_per_role` (default 0: none, range 0..100000000).
pub fn max_queue_size_per_role() -> Option<i32> {
    Some(MAX_QUEUE_SIZE_PER_ROLE.get()).filter(|&n| n > 0)
}

/// `steadytext.max_priority` (default 1000, range -1000..1000).
pub fn max_priority() -> i32 {
    MAX_PRIORITY.get()
}

/// `steadytext.max_retries` (see [`settings::MAX_RETRIES`]); workers read the worker
/// settings themselves with `current_setting`.
pub fn max_retries() -> i32 {
    MAX_RETRIES.get()
}

/// `steadytext.worker_timeout` in seconds (see [`settings::WORKER_TIMEOUT`]).
pub fn worker_timeout_secs() -> i32 {
    WORKER_TIMEOUT.get()
}

/// `steadytext.result_cache_max_entries` (default 100000, range 0..2147483647).
pub fn result_cache_max_entries() -> i32 {
    RESULT_CACHE_MAX_ENTRIES.get()
}

/// `steadytext.result_cache_max_age` in seconds (default 30 days, range 1..2147483647).
pub fn result_cache_max_age_secs() -> i32 {
    RESULT_CACHE_MAX_AGE.get()
}
