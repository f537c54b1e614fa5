//! Test fixtures shared by the test suites and the benchmarks of pg_steadytext: the packaged
//! Gemma model loaded one way, tiny reranker GGUFs generated on demand, a local HTTP file server, a long document to chunk, a throwaway PostgreSQL cluster (and a PgBouncer in front of it), and `steadytext` daemon processes
//! waited for through their one readiness signal (`--ready-file`). A dev-dependency only; no
//! library of the project exposes these.

pub mod cluster;
pub mod daemon;
pub mod document;
pub mod file_server;
#[cfg(feature = "models")]
pub mod gemma;
pub mod model_dirs;
pub mod pgbouncer;
pub mod queue_fill;
#[cfg(feature = "models")]
pub mod tiny_cross_encoder;
#[cfg(feature = "models")]
pub mod tiny_qwen3_reranker;
