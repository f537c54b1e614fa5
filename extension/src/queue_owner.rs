//! The extension's own writes to the queue run as the queue table's owner, the way a SECURITY
//! DEFINER function runs as its owner: ordinary roles have no INSERT or UPDATE on
//! `steadytext_queue`, so a request can only be written by `steadytext_*_async` (which validates
//! it, applies the queue limits and names the caller as its `owner`) and cancelled by
//! `steadytext_cancel_async` (after row-level security has shown the caller the request). While
//! switched, the session is in a security-restricted operation (no `SET ROLE`, no temporary
//! objects), and only the fixed, schema-qualified statements of the extension run. A
//! derivation's input expression and write-back run the same way as the role that declared it
//! ([`run_as`], `derivation_rights`).

use pgrx::pg_sys;

use crate::error::SqlError;

/// The role the current statement runs as (`current_user`: a SECURITY DEFINER function's owner
/// inside one).
pub fn caller() -> pg_sys::Oid {
    // SAFETY: a plain read of the backend's current user.
    unsafe { pg_sys::GetUserId() }
}

/// Whether `role` is a superuser.
pub fn is_superuser(role: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup by oid.
    unsafe { pg_sys::superuser_arg(role) }
}

/// The role's name, for messages (its oid if it no longer exists).
pub fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: a catalog lookup by oid; with noerr a missing role gives NULL.
    unsafe {
        let name = pg_sys::GetUserNameFromId(role, true);
        if name.is_null() {
            role.to_u32().to_string()
        } else {
            std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
        }
    }
}

/// The owner of `table` (the queue's owner: the role that created the extension).
fn owner_of(table: pg_sys::Oid) -> Result<pg_sys::Oid, SqlError> {
    // SAFETY: opens the relation's cache entry, reads its owner and closes it again.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(table);
        if rel.is_null() {
            return Err(SqlError::NotInstalled);
        }
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::RelationClose(rel);
        Ok(owner)
    }
}

/// Runs `work` as the owner of `table`, then switches back. An error inside leaves the switch
/// back to the (sub)transaction abort, which restores the user and security context it started
/// with (as for SECURITY DEFINER functions).
pub fn run_as_owner<T>(
    table: pg_sys::Oid,
    work: impl FnOnce() -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    run_as(owner_of(table)?, work)
}

/// Whether the current role owns `table` (the extension's own SECURITY DEFINER functions run as
/// the queue's owner).
pub fn owns(table: pg_sys::Oid) -> Result<bool, SqlError> {
    Ok(owner_of(table)? == caller())
}

/// Runs `work` as `role` in a security-restricted operation (no `SET ROLE`, no temporary
/// objects), then switches back; errors as in [`run_as_owner`].
pub fn run_as<T>(
    role: pg_sys::Oid,
    work: impl FnOnce() -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    let (mut user, mut context) = (pg_sys::Oid::INVALID, 0);
    // SAFETY: reads this backend's current user and security context.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut user, &mut context) };
    let switched = context
        | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
        | pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
    // SAFETY: the documented way to run as another user for a while (fmgr's SECURITY DEFINER
    // handling does the same); restored right after, or by the abort on error.
    unsafe { pg_sys::SetUserIdAndSecContext(role, switched) };
    let result = work();
    // SAFETY: as above.
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}
