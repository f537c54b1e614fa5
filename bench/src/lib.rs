//! Rerunnable benchmarks of pg_steadytext. Each figure starts a throwaway PostgreSQL cluster
//! with the installed extension (and `steadytext` processes where needed), measures, prints one
//! machine-readable line (see [`report::Line`]), and stops everything it started.

pub mod cancel_release;
pub mod completion;
pub mod constrained;
pub mod contention;
pub mod derive;
pub mod drain;
pub mod engine;
pub mod enqueue;
pub mod error;
pub mod long_prompt_stall;
pub mod many_daemons;
pub mod mixed_latency;
pub mod queue_growth;
pub mod queue_latency;
pub mod report;
pub mod setup;
pub mod shared_cache;
pub mod stats;
pub mod sync_latency;
pub mod ui_page_cost;

/// The throwaway cluster and daemon processes of the integration tests.
pub use steadytext_testkit::{cluster, daemon};
