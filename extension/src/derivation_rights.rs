//! The primitives the derivations' SQL (`extension/sql/v0.2.0/derivations.sql`) needs from Rust:
//! running a statement as a derivation's declarer (and telling a write-back statement's own
//! triggers which column it writes), and checking a derivation's request arguments with the
//! rules every request is checked with.
//!
//! A derivation's input expression and its write into the destination are the declarer's code
//! and the declarer's write, so they run with exactly the declarer's rights (and under the
//! source's row-level security for the declarer): never as the queue's owner whose SECURITY
//! DEFINER functions call them, never as a worker, never as the role whose INSERT fired a
//! trigger. SQL functions cannot switch to an arbitrary role (SET ROLE is refused inside SECURITY
//! DEFINER functions, and needs membership), so [`steadytext_derivation_run_as`] does it the way
//! fmgr does for SECURITY DEFINER functions. Only the queue's owner may call it, and only the
//! extension's own functions run as the queue's owner.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use pgrx::pg_sys::BuiltinOid::JSONBOID;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;
use pgrx::{JsonB, PgOid};
use serde_json::Value;
use steadytext_api::queue_request::{PayloadError, QueuedRequest};

use crate::error::{or_raise, SqlError};
use crate::{ext_schema, queue_owner};

/// Plans kept per session before they are all dropped (a walk's statements name their
/// position, so their texts do not repeat).
const MAX_KEPT_PLANS: usize = 64;

thread_local! {
    /// The kept plans of the statements run so far, by text: a trigger's evaluation and a
    /// write-back run the same few statements again and again (a backend is single-threaded).
    static PLANS: RefCell<HashMap<String, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
    /// A relation changed since the plans were kept: a table dropped and created again under
    /// the same name, or altered, can leave the same text with another row type, which a kept
    /// plan (that names the table only through its row type) would not notice. Dropped at the
    /// next run.
    static STALE: Cell<bool> = const { Cell::new(false) };
    /// The write-back statement running now, if any (see [`steadytext_derivation_written_column`]).
    static WRITING_BACK: RefCell<Option<WriteBack>> = const { RefCell::new(None) };
}

/// A write-back statement: it updates only `column` of `relid`, and its own statement triggers
/// fire at trigger depth `depth`.
struct WriteBack {
    relid: pg_sys::Oid,
    column: String,
    depth: i32,
}

/// Restores the write-back that was running before, when a statement ends (or its error unwinds).
struct WriteBackScope(Option<WriteBack>);

impl Drop for WriteBackScope {
    fn drop(&mut self) {
        let previous = self.0.take();
        WRITING_BACK.set(previous);
    }
}

/// The current trigger depth (`pg_trigger_depth()`): 0 outside triggers.
fn trigger_depth() -> i32 {
    // SAFETY: a builtin without arguments that returns an int4 read from a backend static.
    unsafe { pgrx::direct_function_call::<i32>(|fcinfo| pg_sys::pg_trigger_depth(fcinfo), &[]) }
        .unwrap_or(0)
}

/// Registers the invalidation callback that marks the kept plans stale; called from `_PG_init`.
pub fn init() {
    // SAFETY: `_PG_init` runs once per backend while the library loads; the callback only sets
    // a flag (no catalog access, no allocation), as invalidation callbacks must.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(on_relation_change), pg_sys::Datum::from(0))
    };
}

unsafe extern "C-unwind" fn on_relation_change(_arg: pg_sys::Datum, _relid: pg_sys::Oid) {
    STALE.set(true);
}

/// Runs `query` (one statement whose first column is a jsonb, with `arg` as `$1`) as `role` in
/// a security-restricted operation and returns that column of every row. A write-back names
/// the one column of `writes` its statement updates (`writes_column`), which that statement's
/// own triggers can ask for ([`steadytext_derivation_written_column`]). For the extension's own
/// derivation functions only (42501 for anyone else).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_derivation_run_as(
    role: pg_sys::Oid,
    query: &str,
    arg: Option<JsonB>,
    writes: default!(Option<pg_sys::Oid>, "NULL"),
    writes_column: default!(Option<&str>, "NULL"),
) -> SetOfIterator<'static, JsonB> {
    let rows = or_raise((|| {
        if !queue_owner::owns(ext_schema::queue_table()?)? {
            return Err(SqlError::Private("steadytext_derivation_run_as"));
        }
        if role == pg_sys::InvalidOid {
            return Err(SqlError::Null("role"));
        }
        if STALE.replace(false) {
            PLANS.with_borrow_mut(HashMap::clear);
        }
        let _scope = match (writes, writes_column) {
            (Some(relid), Some(column)) => {
                let current =
                    WriteBack { relid, column: column.to_owned(), depth: trigger_depth() + 1 };
                Some(WriteBackScope(WRITING_BACK.replace(Some(current))))
            }
            _ => None,
        };
        queue_owner::run_as(role, || {
            Spi::connect_mut(|client| {
                // the kept plan of this text, taken out while it runs (the statement may fire a
                // trigger that runs another one); put back after
                let plan = match PLANS.with_borrow_mut(|p| p.remove(query)) {
                    Some(plan) => plan,
                    None => client.prepare_mut(query, &[PgOid::from(JSONBOID)])?.keep(),
                };
                let table = client.update(&plan, None, &[arg.into()])?;
                let mut rows = Vec::with_capacity(table.len());
                for row in table {
                    rows.push(row.get::<JsonB>(1)?.unwrap_or(JsonB(Value::Null)));
                }
                PLANS.with_borrow_mut(|p| {
                    if p.len() >= MAX_KEPT_PLANS {
                        p.clear();
                    }
                    p.insert(query.to_owned(), plan);
                });
                Ok::<_, SqlError>(rows)
            })
        })
    })());
    SetOfIterator::new(rows)
}

/// The column of `relid` that a derivation's write-back updates in the statement whose statement
/// triggers fire now, or NULL: a derivation that reads neither it nor anything computed from it
/// has nothing to compare in that UPDATE. Only the write-back's own statement answers: an UPDATE
/// run by a trigger it fires (a deeper trigger level) or by another statement does not.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_derivation_written_column(relid: pg_sys::Oid) -> Option<String> {
    let depth = trigger_depth();
    WRITING_BACK.with_borrow(|w| {
        w.as_ref().filter(|w| w.relid == relid && w.depth == depth).map(|w| w.column.clone())
    })
}

/// Checks the arguments of a derivation's requests (`parameters`, without the input) for
/// `function_name`, as every request is checked before it is queued: 22023 (2201B for a regex
/// that does not compile) if a request with them would be refused.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_derivation_check_request(function_name: &str, parameters: JsonB) {
    or_raise((|| {
        let JsonB(mut params) = parameters;
        let input = if function_name.starts_with("embed") { "text_input" } else { "prompt" };
        if let Value::Object(map) = &mut params {
            map.insert(input.to_owned(), Value::String("x".to_owned()));
        }
        let request = QueuedRequest::from_row(function_name, params).map_err(|e| {
            let reason = match e {
                PayloadError::Parameters { reason, .. } => reason,
                other => other.to_string(),
            };
            SqlError::DerivationOptions { kind: function_name.to_owned(), reason }
        })?;
        request.validate()?;
        Ok(())
    })())
}
