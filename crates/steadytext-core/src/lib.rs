//! The pg_steadytext inference engine: deterministic text generation (free or constrained to a
//! JSON schema, a regex or a list of choices) and embeddings on llama.cpp.
//!
//! Everything the SQL functions end up computing is computed here, in the `steadytext`
//! daemon process — never inside a PostgreSQL backend.

pub mod cache_key;
pub mod encoders;
pub mod error;
pub mod generation;
pub mod models;
pub mod runtime;

// The modules' paths from before they were grouped (`steadytext_core::embed`, …), kept.
pub use encoders::{chunking, embed, rerank, slots};
pub use generation::{chat, constraint, decode_batch, generate};
use generation::{closing, guide};
pub use models::{bert_gguf, download, gguf, registry};
pub use runtime::{backend, kernels, threads};

pub use chat::ChatMessage;
pub use constraint::Constraint;
pub use decode_batch::{Caller, DecodeBatch};
pub use embed::Embedder;
pub use error::CoreError;
pub use generate::{GenerateRequest, Generation, Generator};
pub use models::{ImportedModelSpec, ModelDir, ModelSpec};
pub use threads::ThreadPolicy;
