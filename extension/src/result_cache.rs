//! The result cache every worker shares (`extension/sql/v0.1.0/result_cache.sql`): its table and
//! functions are plain SQL; this module reports the bounds its settings give, which the workers
//! pass to `steadytext_result_cache_evict`.

use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::gucs;

pgrx::extension_sql_file!(
    "../sql/v0.1.0/result_cache.sql",
    name = "result_cache",
    requires = ["queue_schema"]
);

/// The result cache's bounds as configured: `steadytext.result_cache_max_entries` and
/// `steadytext.result_cache_max_age`. Workers evict with
/// `SELECT steadytext_result_cache_evict(max_entries, max_age) FROM steadytext_result_cache_limits()`.
#[pg_extern(stable, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn steadytext_result_cache_limits(
) -> TableIterator<'static, (name!(max_entries, i64), name!(max_age, Interval))> {
    let secs = gucs::result_cache_max_age_secs();
    // whole days as days, so that the default reads '30 days'
    let age = Interval::new(0, secs / 86_400, i64::from(secs % 86_400) * 1_000_000)
        .unwrap_or_else(|_| Interval::from_seconds(f64::from(secs)));
    TableIterator::once((i64::from(gucs::result_cache_max_entries()), age))
}
