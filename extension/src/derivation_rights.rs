//! The two primitives the derivations' SQL (`extension/sql/v0.2.0/derivations.sql`) needs from
//! Rust: running a statement as a derivation's declarer, and checking a derivation's request
//! arguments with the rules every request is checked with.
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
/// a security-restricted operation and returns that column of every row. For the extension's
/// own derivation functions only (42501 for anyone else).
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_derivation_run_as(
    role: pg_sys::Oid,
    query: &str,
    arg: Option<JsonB>,
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
