//! pg_steadytext: the SQL face of steadytext. This library runs inside PostgreSQL backends and
//! therefore never runs inference: it talks to the `steadytext` daemon and to the queue tables.

use pgrx::prelude::*;

mod async_requests;
mod async_results;
mod completion_wakeup;
mod daemon;
mod derivation_rights;
mod derivations;
mod enqueue_buffer;
mod error;
mod ext_schema;
mod gucs;
mod queue_depth;
mod queue_monitor;
mod queue_owner;
mod queue_schema;
mod result_cache;
mod sql_defaults;
mod sync_functions;

pgrx::pg_module_magic!(name, version);

/// Registers the extension's settings and the executor hooks that write a statement's enqueued
/// requests together (`enqueue_buffer`) when the library is loaded and, when it is loaded through
/// `shared_preload_libraries`, requests the shared memory that wakes `steadytext_get_async_result`
/// waiters at the commit that finishes their request (without preloading they poll, 5 ms doubling
/// to 500 ms); see `completion_wakeup` and docs/async-waits.md.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    completion_wakeup::init();
    enqueue_buffer::init();
    derivation_rights::init();
}

/// Version of the installed pg_steadytext library, e.g. `0.1.0`.
#[pg_extern(immutable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_version() -> &'static str {
    steadytext_api::VERSION
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn version_matches_the_crate() {
        let v = Spi::get_one::<String>("SELECT steadytext_version()").unwrap().unwrap();
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        let ext = Spi::get_one::<String>(
            "SELECT extversion::text FROM pg_extension WHERE extname = 'pg_steadytext'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(ext, v, "control file version and library version must agree");
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    /// Per-test-run setup (none needed).
    pub fn setup(_options: Vec<&str>) {}

    /// postgresql.conf settings for the test cluster: the library is preloaded, so these tests
    /// run with the shared-memory wake-up (the regress and isolation tiers run without it).
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pg_steadytext'"]
    }
}
