//! Requests enqueued by one statement reach `steadytext_queue` in one `INSERT` when that
//! statement ends, instead of one `INSERT` per call.
//!
//! A single-row `INSERT` into the queue costs far more than the row itself: every execution
//! builds the table's CHECK constraints and row-level-security checks from their stored form
//! again (about half of a call's time, measured with `perf`). So `SELECT
//! steadytext_embed_async(body) FROM docs` or a trigger that enqueues per row keeps its rows
//! here (ids are made at the call, as `gen_random_uuid()` makes them) and writes them together.
//!
//! When the rows are written, so that every later statement sees them as it saw the old
//! per-call `INSERT`:
//! * when the statement that made the calls has run (the end of its `ExecutorRun`, or of its
//!   `ExecutorFinish` for calls from AFTER triggers; a cursor's rows at the end of each `FETCH`).
//!   The executor nesting level is tracked as `pg_stat_statements` does, so a nested statement
//!   ending (a SQL function per row) does not write, while a PL/pgSQL `PERFORM` that enqueues
//!   writes when it ends;
//! * at once when the call runs outside any executor (a `CALL` argument, a PL/pgSQL expression
//!   at the top of a `DO` block or procedure);
//! * before any pg_steadytext function looks at the queue ([`flush`]), so
//!   `steadytext_check_async(steadytext_generate_async(…))` finds its request;
//! * every [`FLUSH_AT`] rows, and before the transaction commits or prepares (a safety net).
//!
//! The one visible difference from a per-call `INSERT`: in a PL/pgSQL function that enqueues in
//! an assignment (`id := steadytext_generate_async(…)`) while called from a statement, a plain
//! query of `steadytext_queue` later in that same function does not see the row until the
//! calling statement ends (the extension's own functions do).
//!
//! Rolled back work leaves nothing behind: rows of an aborted subtransaction (a PL/pgSQL
//! `EXCEPTION` block) or transaction are dropped, just as their `INSERT` would have been undone.
//! Each row belongs to the role its call ran as (`current_user`: a SECURITY DEFINER function's
//! owner inside one), recorded by oid in `owner`. The rows are written as the queue's owner
//! (`queue_owner`): ordinary roles may not insert into the queue themselves.

use std::cell::{Cell, RefCell};
use std::ptr::null_mut;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::BuiltinOid::{
    INT4ARRAYOID, INT4OID, JSONBOID, OIDARRAYOID, OIDOID, TEXTARRAYOID, TEXTOID, UUIDARRAYOID,
    UUIDOID,
};
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{JsonB, PgOid, Uuid};
use serde_json::Value;
use steadytext_api::function::Function;
use steadytext_api::notifications::Announcement;

use crate::error::SqlError;
use crate::{ext_schema, queue_owner};

/// Rows kept before they are written even though the statement goes on.
pub const FLUSH_AT: usize = 1000;

/// One request waiting to be written.
#[derive(Debug, Clone)]
struct Row {
    /// Its id, already returned to the caller.
    id: Uuid,
    /// `function_name`.
    function: Function,
    /// `parameters`.
    params: Value,
    /// `priority`.
    priority: i32,
    /// `max_retries`.
    max_retries: i32,
    /// The subtransaction that made it (dropped if that one aborts).
    subxact: pg_sys::SubTransactionId,
    /// The role the call ran as (`current_user`, e.g. a SECURITY DEFINER function's owner): the
    /// request is that role's (`owner`, row-level security).
    user: pg_sys::Oid,
}

/// The rows of the running statement(s).
#[derive(Debug, Default)]
struct Buffer {
    /// In call order.
    rows: Vec<Row>,
    /// `steadytext_queue` as the calls resolved it.
    table: pg_sys::Oid,
    /// The deepest executor nesting level a row was made at: the rows are written when a
    /// statement at a shallower level ends.
    level: u32,
}

/// The prepared `INSERT`, for the table it was prepared for.
struct Prepared {
    /// `steadytext_queue`'s oid.
    table: pg_sys::Oid,
    /// The kept plan.
    plan: OwnedPreparedStatement,
}

thread_local! {
    /// This backend's rows (PostgreSQL backends are single-threaded).
    static BUFFER: RefCell<Buffer> = RefCell::new(Buffer::default());
    /// The executor nesting level each open subtransaction started at, innermost last.
    static SUBXACT_LEVELS: RefCell<Vec<(pg_sys::SubTransactionId, u32)>> =
        const { RefCell::new(Vec::new()) };
    /// A write is under way (its own statement must not write again).
    static WRITING: Cell<bool> = const { Cell::new(false) };
    /// Rows written inside a subtransaction younger than the one that made them: if that
    /// subtransaction aborts, their `INSERT` is undone but they are not, so they go back into
    /// the buffer. With the subtransaction they were written in.
    static CARRIED: RefCell<Vec<(Row, pg_sys::SubTransactionId)>> =
        const { RefCell::new(Vec::new()) };
    /// Announcements this backend sent (the token's counter).
    static ANNOUNCED: Cell<u64> = const { Cell::new(0) };
    /// The kept plans of the write, by [`Shape`].
    static PLANS: RefCell<[Option<Prepared>; 2]> = const { RefCell::new([None, None]) };
}

/// Executor nesting level: statements running (`ExecutorRun`/`ExecutorFinish`) right now.
static NESTING: AtomicU32 = AtomicU32::new(0);

static mut PREV_RUN: pg_sys::ExecutorRun_hook_type = None;
static mut PREV_FINISH: pg_sys::ExecutorFinish_hook_type = None;

/// Installs the executor hooks and transaction callbacks; called from `_PG_init`.
pub fn init() {
    // SAFETY: `_PG_init` runs once per process while the library loads, before any query uses
    // the hooks; chaining the previous hooks is how extensions share them.
    unsafe {
        PREV_RUN = pg_sys::ExecutorRun_hook;
        pg_sys::ExecutorRun_hook = Some(on_run);
        PREV_FINISH = pg_sys::ExecutorFinish_hook;
        pg_sys::ExecutorFinish_hook = Some(on_finish);
        pg_sys::RegisterXactCallback(Some(on_xact), null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact), null_mut());
    }
}

/// A fresh version-4 uuid from PostgreSQL's strong random source (as `gen_random_uuid()`).
fn new_id() -> Result<Uuid, SqlError> {
    let mut bytes = [0u8; 16];
    // SAFETY: writes exactly `bytes.len()` bytes into the buffer.
    if !unsafe { pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) } {
        return Err(SqlError::Random);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Ok(Uuid::from_bytes(bytes))
}

/// Keeps one request per element of `params` (all for `function`, with `priority` and
/// `max_retries`) to be written when the calling statement ends; returns their new ids in order.
pub fn push(
    function: Function,
    params: Vec<Value>,
    priority: i32,
    max_retries: i32,
) -> Result<Vec<Uuid>, SqlError> {
    // SAFETY: plain reads of the transaction state.
    let (subxact, user) = unsafe { (pg_sys::GetCurrentSubTransactionId(), pg_sys::GetUserId()) };
    let level = NESTING.load(Relaxed);
    let mut ids = Vec::with_capacity(params.len());
    let full = BUFFER.with_borrow_mut(|b| -> Result<bool, SqlError> {
        if b.rows.is_empty() {
            // kept rows never span a DROP/CREATE EXTENSION: DDL is a statement of its own
            b.table = ext_schema::queue_table()?;
            b.level = level;
        }
        b.level = b.level.max(level);
        for params in params {
            let id = new_id()?;
            ids.push(id);
            b.rows.push(Row { id, function, params, priority, max_retries, subxact, user });
        }
        Ok(b.rows.len() >= FLUSH_AT)
    })?;
    if full || level == 0 {
        flush()?;
    }
    Ok(ids)
}

/// The two shapes of the write, each prepared once per backend (and table).
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// One row: `$1` id, `$2` function name, `$3` parameters, `$4` priority, `$5` max_retries,
    /// `$6` owner.
    One = 0,
    /// Many rows: the same six as arrays, the parameters as one jsonb array.
    Many = 1,
}

impl Shape {
    /// The argument types.
    fn types(self) -> [PgOid; 6] {
        match self {
            Shape::One => [UUIDOID, TEXTOID, JSONBOID, INT4OID, INT4OID, OIDOID],
            Shape::Many => {
                [UUIDARRAYOID, TEXTARRAYOID, JSONBOID, INT4ARRAYOID, INT4ARRAYOID, OIDARRAYOID]
            }
        }
        .map(PgOid::BuiltIn)
    }

    /// The `INSERT` into `table`. Everything is schema-qualified: it runs under the caller's
    /// `search_path` (and no operator is used).
    fn sql(self, table: pg_sys::Oid) -> Result<String, SqlError> {
        // SAFETY: a catalog lookup of an existing relation's namespace.
        let schema = ext_schema::quoted_name(unsafe { pg_sys::get_rel_namespace(table) })?;
        let columns = "(request_id, function_name, parameters, priority, max_retries, owner)";
        Ok(match self {
            Shape::One => format!(
                "INSERT INTO {schema}.steadytext_queue {columns} VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            Shape::Many => format!(
                "INSERT INTO {schema}.steadytext_queue {columns}
                 SELECT r.id, r.f, r.p, r.pri, r.mr, r.o
                 FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2),
                                 pg_catalog.jsonb_array_elements($3),
                                 pg_catalog.unnest($4), pg_catalog.unnest($5),
                                 pg_catalog.unnest($6))
                      AS r(id, f, p, pri, mr, o)"
            ),
        })
    }
}

/// Writes every kept row to the queue now, in call order, and wakes the workers with
/// `NOTIFY steadytext_jobs` (delivered at commit).
pub fn flush() -> Result<(), SqlError> {
    if WRITING.get() {
        return Ok(());
    }
    let (rows, table) = BUFFER.with_borrow_mut(|b| (std::mem::take(&mut b.rows), b.table));
    if rows.is_empty() {
        return Ok(());
    }
    // SAFETY: a plain read of the transaction state.
    let current = unsafe { pg_sys::GetCurrentSubTransactionId() };
    let carried: Vec<_> =
        rows.iter().filter(|r| r.subxact < current).map(|r| (r.clone(), current)).collect();
    let count = rows.len() as u64;
    WRITING.set(true);
    let written = queue_owner::run_as_owner(table, || write(rows, table));
    WRITING.set(false);
    written?;
    CARRIED.with_borrow_mut(|c| c.extend(carried));
    notify_workers(count);
    Ok(())
}

/// The one `INSERT` of `rows` into `table` (run as its owner).
fn write(mut rows: Vec<Row>, table: pg_sys::Oid) -> Result<(), SqlError> {
    let (shape, args): (Shape, [DatumWithOid<'_>; 6]) = if rows.len() == 1 {
        let row = rows.pop().expect("one row");
        let args = [
            row.id.into(),
            row.function.sql_name().into(),
            JsonB(row.params).into(),
            row.priority.into(),
            row.max_retries.into(),
            row.user.into(),
        ];
        (Shape::One, args)
    } else {
        let mut ids = Vec::with_capacity(rows.len());
        let mut functions = Vec::with_capacity(rows.len());
        let mut params = Vec::with_capacity(rows.len());
        let mut priorities = Vec::with_capacity(rows.len());
        let mut retries = Vec::with_capacity(rows.len());
        let mut owners = Vec::with_capacity(rows.len());
        for row in rows {
            ids.push(row.id);
            functions.push(row.function.sql_name());
            params.push(row.params);
            priorities.push(row.priority);
            retries.push(row.max_retries);
            owners.push(row.user);
        }
        let args = [
            ids.into(),
            functions.into(),
            JsonB(Value::Array(params)).into(),
            priorities.into(),
            retries.into(),
            owners.into(),
        ];
        (Shape::Many, args)
    };
    let index = shape as usize;
    let stale = PLANS.with_borrow(|p| p[index].as_ref().is_none_or(|p| p.table != table));
    let sql = if stale { Some(shape.sql(table)?) } else { None };
    Spi::connect_mut(|client| {
        if let Some(sql) = sql {
            let plan = client.prepare_mut(&sql, &shape.types())?.keep();
            PLANS.with_borrow_mut(|p| p[index] = Some(Prepared { table, plan }));
        }
        PLANS.with_borrow(|p| {
            let plan = &p[index].as_ref().expect("prepared above").plan;
            client.update(plan, None, &args).map(drop)
        })
    })?;
    Ok(())
}

/// `NOTIFY steadytext_jobs` ([`JOBS_CHANNEL`](steadytext_api::notifications::JOBS_CHANNEL))
/// announcing `requests` new requests ([`Announcement`]: this backend's count of announcements
/// is the token), through `pg_notify` itself, without parsing a statement.
fn notify_workers(requests: u64) {
    let n = ANNOUNCED.get() + 1;
    ANNOUNCED.set(n);
    let payload = Announcement { token: n.to_string(), requests }.payload();
    // SAFETY: pg_notify is a plain V1 function; pgrx's binding catches its errors.
    unsafe {
        pgrx::direct_function_call::<()>(
            pg_sys::pg_notify,
            &[steadytext_api::notifications::JOBS_CHANNEL.into_datum(), payload.into_datum()],
        );
    }
}

// The executor hooks are written as plain frames (no destructors, no `#[pg_guard]`) around
// unguarded calls of the executor: an error inside the statement then `longjmp`s through them
// untouched, exactly as through a C hook, and reaches the client with everything PostgreSQL
// attached to it (CONTEXT lines, positions, constraint and table names), which pgrx's guard,
// re-raising a copy, would drop. The nesting level such an error skips is restored by the
// (sub)transaction abort callbacks below.
unsafe extern "C-unwind" {
    #[cfg(not(feature = "pg18"))]
    #[link_name = "standard_ExecutorRun"]
    fn unguarded_standard_executor_run(
        query: *mut pg_sys::QueryDesc,
        direction: pg_sys::ScanDirection::Type,
        count: u64,
        execute_once: bool,
    );
    #[cfg(feature = "pg18")]
    #[link_name = "standard_ExecutorRun"]
    fn unguarded_standard_executor_run(
        query: *mut pg_sys::QueryDesc,
        direction: pg_sys::ScanDirection::Type,
        count: u64,
    );
    #[link_name = "standard_ExecutorFinish"]
    fn unguarded_standard_executor_finish(query: *mut pg_sys::QueryDesc);
}

#[cfg(not(feature = "pg18"))]
unsafe extern "C-unwind" fn on_run(
    query: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
    execute_once: bool,
) {
    NESTING.fetch_add(1, Relaxed);
    // SAFETY: the executor's own arguments, passed on unchanged; see the note above on errors.
    unsafe {
        match PREV_RUN {
            Some(prev) => prev(query, direction, count, execute_once),
            None => unguarded_standard_executor_run(query, direction, count, execute_once),
        }
        NESTING.fetch_sub(1, Relaxed);
        after_statement_run();
    }
}

#[cfg(feature = "pg18")]
unsafe extern "C-unwind" fn on_run(
    query: *mut pg_sys::QueryDesc,
    direction: pg_sys::ScanDirection::Type,
    count: u64,
) {
    NESTING.fetch_add(1, Relaxed);
    // SAFETY: the executor's own arguments, passed on unchanged; see the note above on errors.
    unsafe {
        match PREV_RUN {
            Some(prev) => prev(query, direction, count),
            None => unguarded_standard_executor_run(query, direction, count),
        }
        NESTING.fetch_sub(1, Relaxed);
        after_statement_run();
    }
}

unsafe extern "C-unwind" fn on_finish(query: *mut pg_sys::QueryDesc) {
    NESTING.fetch_add(1, Relaxed);
    // SAFETY: the executor's own argument, passed on unchanged; see the note above on errors.
    unsafe {
        match PREV_FINISH {
            Some(prev) => prev(query),
            None => unguarded_standard_executor_finish(query),
        }
        NESTING.fetch_sub(1, Relaxed);
        after_statement_run();
    }
}

/// After a statement's `ExecutorRun` or `ExecutorFinish`: if rows were made at a deeper level
/// than the one it returned to, the statement that made the calls has run, so they are written.
#[pg_guard]
unsafe extern "C-unwind" fn after_statement_run() {
    let level = NESTING.load(Relaxed);
    let due = BUFFER.with_borrow(|b| !b.rows.is_empty() && level < b.level);
    // SAFETY: a plain read of the transaction state.
    if due && unsafe { pg_sys::IsTransactionState() } {
        crate::error::or_raise(flush());
    }
}

/// Writes what is left before commit or prepare; forgets everything on abort.
#[pg_guard]
unsafe extern "C-unwind" fn on_xact(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            // no statement runs at commit: the write needs a snapshot of its own
            // SAFETY: snapshot stack calls of the running transaction; an error inside is
            // cleaned up by the abort that follows it.
            let pushed = unsafe {
                let needed =
                    !BUFFER.with_borrow(|b| b.rows.is_empty()) && !pg_sys::ActiveSnapshotSet();
                if needed {
                    pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
                }
                needed
            };
            crate::error::or_raise(flush());
            if pushed {
                // SAFETY: pops the snapshot pushed above.
                unsafe { pg_sys::PopActiveSnapshot() };
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            BUFFER.with_borrow_mut(|b| b.rows.clear());
            CARRIED.with_borrow_mut(Vec::clear);
            SUBXACT_LEVELS.with_borrow_mut(Vec::clear);
            NESTING.store(0, Relaxed);
            WRITING.set(false);
        }
        XACT_EVENT_COMMIT | XACT_EVENT_PREPARE | XACT_EVENT_PARALLEL_COMMIT => {
            CARRIED.with_borrow_mut(Vec::clear);
            SUBXACT_LEVELS.with_borrow_mut(Vec::clear);
        }
        _ => {}
    }
}

/// Remembers the nesting level each subtransaction starts at. When one aborts: drops the rows it
/// (or any of its children, whose ids are higher) made, takes back into the buffer the older rows
/// whose `INSERT` it undid, and returns to that level. When one commits, the rows it wrote belong
/// to its parent.
#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    subxact: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    match event {
        SUBXACT_EVENT_START_SUB => {
            SUBXACT_LEVELS.with_borrow_mut(|l| l.push((subxact, NESTING.load(Relaxed))));
        }
        SUBXACT_EVENT_COMMIT_SUB => {
            SUBXACT_LEVELS.with_borrow_mut(|l| l.retain(|&(id, _)| id < subxact));
            CARRIED.with_borrow_mut(|c| {
                for (_, written_in) in c.iter_mut().filter(|(_, w)| *w == subxact) {
                    *written_in = parent;
                }
                c.retain(|(row, written_in)| row.subxact < *written_in);
            });
        }
        SUBXACT_EVENT_ABORT_SUB => {
            let started_at = SUBXACT_LEVELS.with_borrow_mut(|l| {
                let started_at = l.iter().find(|&&(id, _)| id == subxact).map(|&(_, n)| n);
                l.retain(|&(id, _)| id < subxact);
                started_at
            });
            // a subtransaction that began before the library was loaded (the library was loaded
            // inside it) began before any statement was counted: every counted one is inside
            // it and ends with it
            let level = started_at.unwrap_or(0);
            NESTING.store(level, Relaxed);
            let undone: Vec<Row> = CARRIED.with_borrow_mut(|c| {
                let (undone, kept): (Vec<_>, Vec<_>) =
                    std::mem::take(c).into_iter().partition(|(_, w)| *w >= subxact);
                *c = kept;
                undone.into_iter().map(|(row, _)| row).filter(|r| r.subxact < subxact).collect()
            });
            BUFFER.with_borrow_mut(|b| {
                b.rows.retain(|row| row.subxact < subxact);
                if !undone.is_empty() {
                    // written again when the statement around the subtransaction has run
                    b.level = if b.rows.is_empty() { level } else { b.level.max(level) };
                    b.rows.splice(0..0, undone);
                }
            });
            WRITING.set(false);
        }
        _ => {}
    }
}
