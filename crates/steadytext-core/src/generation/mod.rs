//! Text generation: the loaded model and its requests, continuous batching, constrained
//! decoding and the chat template.

pub mod chat;
pub(crate) mod closing;
pub mod constraint;
pub mod decode_batch;
pub mod generate;
pub mod generator;
pub(crate) mod guide;
pub(crate) mod logits;
