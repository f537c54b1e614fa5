//! Models read for a vector or a score rather than for text: embeddings, the kept contexts they
//! run in, and reranking.

pub mod chunking;
pub mod embed;
pub mod rerank;
pub mod slots;
