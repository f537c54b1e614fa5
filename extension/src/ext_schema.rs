//! Where the extension's own objects live. Every pg_steadytext function runs with
//! `search_path = pg_catalog, pg_temp`, so the SQL it runs names the extension's tables and
//! functions through the schema found here (as the SQL files do with `@extschema@`): nothing a
//! role creates in any schema on its `search_path`, the extension's own included, is ever run or
//! read in their place.

use std::cell::Cell;
use std::ffi::CStr;

use pgrx::prelude::*;

use crate::error::SqlError;

/// The extension's name in `pg_extension`.
const EXTENSION: &CStr = c"pg_steadytext";

thread_local! {
    /// The extension's schema and its queue table, as last looked up.
    static FOUND: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
}

/// The extension's schema and the oid of its table `steadytext_queue`. The pair found last is
/// reused while that table still exists under that name in that schema (two syscache probes);
/// after a DROP and CREATE EXTENSION it is looked up again.
fn found() -> Result<(pg_sys::Oid, pg_sys::Oid), SqlError> {
    if let Some((schema, table)) = FOUND.get() {
        // SAFETY: syscache lookups by oid; get_rel_name returns NULL for a missing relation.
        let current = unsafe {
            let name = pg_sys::get_rel_name(table);
            !name.is_null()
                && CStr::from_ptr(name) == c"steadytext_queue"
                && pg_sys::get_rel_namespace(table) == schema
        };
        if current {
            return Ok((schema, table));
        }
    }
    // SAFETY: a catalog lookup by name; missing_ok returns InvalidOid instead of raising.
    let extension = unsafe { pg_sys::get_extension_oid(EXTENSION.as_ptr(), true) };
    if extension == pg_sys::InvalidOid {
        return Err(SqlError::NotInstalled);
    }
    let schema = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT e.extnamespace FROM pg_catalog.pg_extension e WHERE e.oid OPERATOR(pg_catalog.=) $1",
        &[extension.into()],
    )?
    .ok_or(SqlError::NotInstalled)?;
    // SAFETY: a catalog lookup of a relation by name in one schema.
    let table = unsafe { pg_sys::get_relname_relid(c"steadytext_queue".as_ptr(), schema) };
    if table == pg_sys::InvalidOid {
        return Err(SqlError::NotInstalled);
    }
    FOUND.set(Some((schema, table)));
    Ok((schema, table))
}

/// The oid of the schema pg_steadytext is installed in.
pub fn oid() -> Result<pg_sys::Oid, SqlError> {
    Ok(found()?.0)
}

/// The schema's name, quoted as an identifier where it needs to be.
pub fn quoted_name(schema: pg_sys::Oid) -> Result<String, SqlError> {
    // SAFETY: a catalog lookup; quote_identifier returns a palloc'd or the given C string.
    unsafe {
        let name = pg_sys::get_namespace_name(schema);
        if name.is_null() {
            return Err(SqlError::NotInstalled);
        }
        Ok(CStr::from_ptr(pg_sys::quote_identifier(name)).to_string_lossy().into_owned())
    }
}

/// `schema.object` for one of the extension's objects, e.g. `qualified("steadytext_queue")`.
pub fn qualified(object: &str) -> Result<String, SqlError> {
    Ok(format!("{}.{object}", quoted_name(oid()?)?))
}

/// The oid of the table `steadytext_queue`.
pub fn queue_table() -> Result<pg_sys::Oid, SqlError> {
    Ok(found()?.1)
}
