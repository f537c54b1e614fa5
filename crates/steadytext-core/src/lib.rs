//! The pg_steadytext inference engine: deterministic text generation (free or constrained to a
//! JSON schema, a regex or a list of choices) and embeddings on llama.cpp.
//!
//! Everything the SQL functions end up computing is computed here, in the `steadytext`
//! daemon process — never inside a PostgreSQL backend.

pub mod backend;
pub mod bert_gguf;
pub mod cache_key;
pub mod chat;
mod closing;
pub mod constraint;
pub mod decode_batch;
pub mod download;
pub mod embed;
pub mod error;
pub mod generate;
pub mod gguf;
mod guide;
pub mod kernels;
pub mod models;
pub mod registry;
pub mod rerank;
pub mod slots;
pub mod threads;

pub use chat::ChatMessage;
pub use constraint::Constraint;
pub use decode_batch::{Caller, DecodeBatch};
pub use embed::Embedder;
pub use error::CoreError;
pub use generate::{GenerateRequest, Generation, Generator};
pub use models::{ImportedModelSpec, ModelDir, ModelSpec};
pub use threads::ThreadPolicy;
