//! The pg_steadytext inference engine: deterministic text generation on llama.cpp.
//!
//! Everything the SQL functions end up computing is computed here, in the `steadytext`
//! daemon process — never inside a PostgreSQL backend.

pub mod backend;
pub mod error;
pub mod generate;
pub mod models;

pub use error::CoreError;
pub use generate::{GenerateRequest, Generator};
pub use models::{ModelDir, ModelSpec};
